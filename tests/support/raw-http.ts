/**
 * Sends a request line exactly as written (no URL normalisation by a client library),
 * for path-safety tests: `fetch` would resolve `%2e%2e` and friends before sending.
 */
import { connect } from 'node:net';

export function rawRequest(baseUrl: string, method: string, target: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => (data += d));
    socket.on('error', reject);
    socket.on('end', () => {
      const [head = '', ...rest] = data.split('\r\n\r\n');
      const status = Number(head.split(' ')[1]);
      resolve({ status, headers: head, body: rest.join('\r\n\r\n') });
    });
    const lines = [`${method} ${target} HTTP/1.1`, `Host: ${hostname}:${port}`, 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''];
    socket.write(lines.join('\r\n'), 'latin1');
  });
}
