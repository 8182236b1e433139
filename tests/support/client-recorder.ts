/**
 * A `fetch` for SDK clients that records what the SDK sent (method, URL, headers, body
 * bytes) before sending it unchanged, so tests can compare it with what reached the
 * upstream through the gateway.
 */
export interface SentRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: Uint8Array;
}

export class ClientRecorder {
  readonly sent: SentRequest[] = [];

  get last(): SentRequest {
    const r = this.sent.at(-1);
    if (!r) throw new Error('the SDK sent no request');
    return r;
  }

  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const body = req.body ? new Uint8Array(await req.arrayBuffer()) : new Uint8Array();
    this.sent.push({ method: req.method, url: new URL(req.url), headers: Object.fromEntries(req.headers), body });
    return fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: body.byteLength ? body : undefined,
      signal: init?.signal ?? undefined,
      redirect: 'manual',
    });
  };
}
