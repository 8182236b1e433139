/**
 * Every error the gateway itself answers with is `{"error": {"type", "message"}}`, and
 * every refusal or failure is one GatewayError: its status, its type (a closed set, so
 * metrics and the explorer never meet a value they do not know) and a message for the
 * client that names the setting or the limit, never a secret.
 */
import type { ErrorType } from './outcome.ts';

export type { ErrorType } from './outcome.ts';

const JSON_HEADERS = { 'content-type': 'application/json' } as const;

export function jsonError(
  status: number,
  type: ErrorType,
  message: string,
  headers?: Record<string, string>,
): Response {
  return new Response(JSON.stringify({ error: { type, message } }), {
    status,
    headers: headers ? { ...JSON_HEADERS, ...headers } : JSON_HEADERS,
  });
}

export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    message: string,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }

  toResponse(): Response {
    return jsonError(this.status, this.type, this.message, this.headers);
  }
}
