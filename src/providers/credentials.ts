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
