/** Every error the gateway itself answers with: `{"error": {"type", "message"}}`. */

const JSON_HEADERS = { 'content-type': 'application/json' } as const;

export function jsonError(status: number, type: string, message: string, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify({ error: { type, message } }), {
    status,
    headers: headers ? { ...JSON_HEADERS, ...headers } : JSON_HEADERS,
  });
}

/** A refusal decided before or instead of the upstream call. */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }

  toResponse(): Response {
    return jsonError(this.status, this.type, this.message, this.headers);
  }
}
