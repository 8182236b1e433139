/**
 * One HTTP/1.1 request over a fresh socket, written exactly as given. Used where `fetch`
 * cannot serve: path-safety tests (fetch resolves `%2e%2e` and friends before sending)
 * and load tests past 256 requests (this process's own Bun fetch queues beyond that).
 */
export interface RawResponse {
  status: number;
  /** Status line and headers. */
  head: string;
  body: string;
  /** The whole response as received. */
  text: string;
  /** From connect to the server closing the connection. */
  ms: number;
}

/** HTTP/1.0 requests get no Host header unless `headers` has one. */
export function rawRequest(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body = '',
  version: '1.0' | '1.1' = '1.1',
): Promise<RawResponse> {
  const started = performance.now();
  const host =
    version === '1.0' || Object.keys(headers).some((k) => k.toLowerCase() === 'host') ? [] : ['host: 127.0.0.1'];
  const lines = [
    `${method} ${target} HTTP/${version}`,
    ...host,
    'connection: close',
    ...(body ? [`content-length: ${Buffer.byteLength(body)}`] : []),
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ];
  return new Promise((resolve, reject) => {
    let text = '';
    Bun.connect({
      hostname: '127.0.0.1',
      port,
      socket: {
        open(s) {
          s.write(lines.join('\r\n') + body);
        },
        data(_s, d) {
          text += d.toString('latin1');
        },
        close() {
          const split = text.indexOf('\r\n\r\n');
          resolve({
            status: Number(text.slice(9, 12)),
            head: text.slice(0, split),
            body: text.slice(split + 4),
            text,
            ms: performance.now() - started,
          });
        },
        error(_s, e) {
          reject(e);
        },
        connectError(_s, e) {
          reject(e);
        },
      },
    }).catch(reject);
  });
}

/**
 * A request body that `fetch` sends chunked (no content-length): a plain JavaScript
 * stream, in 7-byte pieces. (A Blob's stream would not do: Bun sends its length.)
 */
export function chunkedStream(text: string): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, (at += 7)));
    },
  });
}
