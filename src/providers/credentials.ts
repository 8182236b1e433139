/**
 * Where clients carry credentials, whatever the provider: the gateway drops all of them
 * when it injects its own key, and governance looks for a virtual key in them.
 */

/**
 * Every header a client may carry a provider credential (or a virtual key) in, Azure API
 * Management's subscription key included.
 */
export const CREDENTIAL_HEADERS = [
  'authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
  'ocp-apim-subscription-key',
] as const;

/**
 * Query parameters that carry credentials: Google's API key (`key`) and OAuth token
 * (`access_token`), Azure's `api-key` (realtime) and API Management's `subscription-key`.
 * Matched by decoded, case-insensitive name (lib/query.ts).
 */
export const CREDENTIAL_PARAMS: ReadonlySet<string> = new Set(['key', 'access_token', 'api-key', 'subscription-key']);

/**
 * WebSocket subprotocols that carry a credential, as a browser must send one (it cannot
 * set headers on a WebSocket handshake): OpenAI Realtime's `openai-insecure-api-key.<key>`.
 */
const CREDENTIAL_SUBPROTOCOLS = ['openai-insecure-api-key.'] as const;

/** The secret a WebSocket subprotocol carries, or undefined when it carries none. */
export function subprotocolCredential(protocol: string): string | undefined {
  for (const prefix of CREDENTIAL_SUBPROTOCOLS) if (protocol.startsWith(prefix)) return protocol.slice(prefix.length);
  return undefined;
}

/** The subprotocols a `Sec-WebSocket-Protocol` header lists (RFC 6455 §11.3.4: comma-separated tokens). */
export function subprotocols(header: string | null): string[] {
  if (!header) return [];
  return header
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}
