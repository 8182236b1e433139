/**
 * Upstream for the client-abort bench (scripts/bench/abort-latency.ts): HTTP/1.1 on raw
 * sockets (Bun.listen), so that what it records is the connection itself closing, seen
 * at the cost of a socket callback (Bun.serve takes ~20 us per aborted request to
 * signal it, which made a thousand simultaneous aborts queue in the mock itself).
 *
 *   POST <any>?probe=ID&delay=MS                     ~1 KB chat completion after MS ms
 *   POST <any>?probe=ID&stream=1&chunks=N&gap=MS     SSE (chunked): N frames `gap` ms apart,
 *                                                    the first at once, usage in the last
 *   GET /clock                                       {"now": performance.timeOrigin + performance.now()}
 *   GET /probe-log?run=PREFIX[&forget=1]             the records of probes whose ID starts with
 *                                                    PREFIX; finished ones (all with forget) are dropped
 *   anything else                                    {"ok":true}
 *
 * A probe's record: `arrived` (its request fully read), `headers` (its response head
 * written), `abortedAt` (its connection closed, or half-closed, before the answer was
 * complete) or `completed`. Times on the clock above, which the processes of one machine
 * share. Keep-alive connections are served one request after another, as upstreams do.
 *
 * Usage: bun scripts/bench/abort-mock.ts <port>
 */
import type { Socket } from 'bun';
import { chatAnswer, chatStreamFrame, PROVIDER_HEADERS } from './common.ts';

const clock = () => performance.timeOrigin + performance.now();
const answer = Buffer.from(chatAnswer());
const providerHeaders = Object.entries(PROVIDER_HEADERS)
  .map(([k, v]) => `${k}: ${v}\r\n`)
  .join('');

interface ProbeRecord {
  id: string;
  stream: boolean;
  arrived: number;
  headers?: number;
  abortedAt?: number;
  abortedBy?: 'close' | 'end';
  completed?: number;
}
const probes = new Map<string, ProbeRecord>();

interface Conn {
  buf: Buffer;
  /** The request being answered (nothing more is parsed until it is done). */
  busy: boolean;
  probe?: ProbeRecord;
  timer?: ReturnType<typeof setTimeout>;
  out: Buffer[];
}

function write(s: Socket<Conn>, data: string | Buffer): void {
  const c = s.data;
  if (c.out.length > 0) {
    c.out.push(Buffer.from(data));
    return;
  }
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const n = s.write(bytes);
  if (n < bytes.length) c.out.push(bytes.subarray(Math.max(0, n)));
}

function json(s: Socket<Conn>, body: unknown): void {
  const text = Buffer.from(JSON.stringify(body));
  write(s, `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${text.length}\r\n\r\n`);
  write(s, text);
  done(s);
}

function done(s: Socket<Conn>): void {
  const c = s.data;
  if (c.probe) c.probe.completed = clock();
  c.probe = undefined;
  c.timer = undefined;
  c.busy = false;
  parse(s);
}

function gone(s: Socket<Conn>, by: 'close' | 'end'): void {
  const c = s.data;
  if (c.timer) clearTimeout(c.timer);
  c.timer = undefined;
  const p = c.probe;
  if (p && p.abortedAt === undefined && p.completed === undefined) {
    p.abortedAt = clock();
    p.abortedBy = by;
  }
  c.probe = undefined;
}

/** Parses and answers the next complete request in the buffer, if any. */
function parse(s: Socket<Conn>): void {
  const c = s.data;
  if (c.busy) return;
  const headEnd = c.buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return;
  const head = c.buf.subarray(0, headEnd).toString('latin1');
  const lines = head.split('\r\n');
  const [method = 'GET', target = '/'] = lines[0]!.split(' ');
  let length = 0;
  let chunked = false;
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i]!.indexOf(':');
    const name = lines[i]!.slice(0, colon).trim().toLowerCase();
    const value = lines[i]!.slice(colon + 1).trim();
    if (name === 'content-length') length = Number(value);
    else if (name === 'transfer-encoding' && value.toLowerCase().includes('chunked')) chunked = true;
  }
  let end = headEnd + 4;
  if (chunked) {
    // Skip the chunks; only the end of the body matters here.
    for (;;) {
      const lineEnd = c.buf.indexOf('\r\n', end);
      if (lineEnd < 0) return;
      const size = parseInt(c.buf.subarray(end, lineEnd).toString('latin1'), 16);
      if (c.buf.length < lineEnd + 2 + size + 2) return;
      end = lineEnd + 2 + size + 2;
      if (size === 0) break;
    }
  } else {
    if (c.buf.length < end + length) return;
    end += length;
  }
  c.buf = c.buf.subarray(end);
  c.busy = true;
  answerRequest(s, method, target);
}

function answerRequest(s: Socket<Conn>, _method: string, target: string): void {
  const c = s.data;
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
  if (path === '/clock') {
    json(s, { now: clock() });
    return;
  }
  if (path === '/probe-log') {
    const run = params.get('run') ?? '';
    const forget = params.get('forget') === '1';
    const out: ProbeRecord[] = [];
    for (const [id, rec] of probes) {
      if (!id.startsWith(run)) continue;
      out.push(rec);
      if (forget || rec.abortedAt !== undefined || rec.completed !== undefined) probes.delete(id);
    }
    json(s, out);
    return;
  }
  const id = params.get('probe');
  if (id === null) {
    json(s, { ok: true });
    return;
  }
  const stream = params.get('stream') === '1';
  const rec: ProbeRecord = { id, stream, arrived: clock() };
  probes.set(id, rec);
  c.probe = rec;
  if (!stream) {
    c.timer = setTimeout(
      () => {
        write(
          s,
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n${providerHeaders}content-length: ${answer.length}\r\n\r\n`,
        );
        write(s, answer);
        rec.headers = clock();
        done(s);
      },
      Number(params.get('delay') ?? 0),
    );
    return;
  }
  const chunks = Number(params.get('chunks') ?? 10);
  const gap = Number(params.get('gap') ?? 50);
  write(
    s,
    `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n${providerHeaders}transfer-encoding: chunked\r\n\r\n`,
  );
  rec.headers = clock();
  let i = 0;
  const next = () => {
    // The last chunk frame and [DONE] go together, as providers do.
    const frame =
      i === chunks - 1 ? chatStreamFrame(i, chunks) + chatStreamFrame(chunks, chunks) : chatStreamFrame(i, chunks);
    const bytes = Buffer.from(frame);
    write(s, `${bytes.length.toString(16)}\r\n`);
    write(s, bytes);
    write(s, '\r\n');
    if (++i < chunks) {
      c.timer = setTimeout(next, gap);
      return;
    }
    write(s, '0\r\n\r\n');
    done(s);
  };
  next();
}

const server = Bun.listen<Conn>({
  hostname: '127.0.0.1',
  port: Number(process.argv[2] ?? 0),
  socket: {
    open(s) {
      s.data = { buf: Buffer.alloc(0), busy: false, out: [] };
    },
    data(s, chunk) {
      const c = s.data;
      c.buf = c.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([c.buf, chunk]);
      parse(s);
    },
    drain(s) {
      const c = s.data;
      while (c.out.length > 0) {
        const head = c.out[0]!;
        const n = s.write(head);
        if (n < head.length) {
          c.out[0] = head.subarray(Math.max(0, n));
          return;
        }
        c.out.shift();
      }
    },
    end(s) {
      gone(s, 'end');
      s.end();
    },
    close(s) {
      gone(s, 'close');
    },
    error(s) {
      gone(s, 'close');
    },
  },
});

process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true, port: server.port, pid: process.pid })}\n`);
