/**
 * A third reference: the bare proxy reading bodies whole (bare-proxy.ts `whole`), served
 * through Elysia instead of `Bun.serve`'s fetch handler, with the same route options as
 * Skybridge (`app.all(prefix/*)`, `parse: 'none'`). With no duties (the bench's
 * reference) it shows what the HTTP framework alone costs: the floor any Elysia gateway
 * reading bodies whole starts from.
 *
 * With duties, some of Skybridge's per-request work is switched on, using Skybridge's
 * own functions: to see what each costs in place, under load, rather than in a
 * microbenchmark. Run several as `ab.ts` proxies:
 *
 *   E=scripts/bench/elysia-proxy.ts
 *   bun scripts/bench/ab.ts --proxy=none:$E:- --proxy=rec:$E:rec --proxy=path:$E:rec,path \
 *       --proxy=hdr:$E:rec,hdr --proxy=scan:$E:rec,path,hdr,scan \
 *       --proxy=log:$E:rec,path,hdr,scan,log,usage --variant=sky:.:logging,metrics --rounds=30 --seconds=1
 *
 * Duties (comma list; `-` or none at all for the bare reference):
 *   u      the request body as a Uint8Array      t     fetch's socket `timeout` option
 *   rec    request id, client address, idle-timeout lift, the log record
 *   path   prefix split and path-safety checks    hdr   both header filters, ids added
 *   scan   `model` / `stream` from the body       log   the log line (JSON.stringify), after the response
 *   usage  usage from the answer (with log)
 *
 * Usage: UPSTREAM=http://127.0.0.1:PORT bun scripts/bench/elysia-proxy.ts <port> [duties]
 */
import { Elysia } from 'elysia';
import { clientResponseHeaders, forwardRequestHeaders } from '../../src/proxy/headers.ts';
import { rootMembers } from '../../src/proxy/members.ts';
import { checkPassthroughPath, splitPassthroughUrl } from '../../src/proxy/path.ts';
import { usageOfBody } from '../../src/usage/scanner.ts';

const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:9';
const prefix = '/openai_passthrough';
const duties = new Set((process.argv[3] ?? '-').split(',').filter((d) => d !== '-'));
const on = (duty: string) => duties.has(duty);

/** Log lines are batched as in the logging plugin, then dropped (the write is not measured). */
let _batch = '';
setInterval(() => {
  _batch = '';
}, 20);

type LogRecord = Record<string, unknown>;

/** The reference: nothing but the proxying (Elysia sees no `server` use, so adds no getter for it). */
async function bare({ request }: { request: Request }): Promise<Response> {
  const url = request.url;
  const path = url.slice(url.indexOf('/', url.indexOf('//') + 2) + prefix.length);
  const headers = new Headers(request.headers);
  headers.delete('host');
  const body = request.method === 'GET' || request.method === 'HEAD' ? null : await request.arrayBuffer();
  const res = await fetch(upstream + path, {
    method: request.method,
    headers,
    body,
    redirect: 'manual',
    decompress: false,
    signal: request.signal,
  });
  const out = new Headers(res.headers);
  out.delete('transfer-encoding');
  out.delete('content-length');
  return new Response(await res.arrayBuffer(), { status: res.status, headers: out });
}

/** The reference with some of Skybridge's duties switched on. */
async function withDuties({
  request,
  server,
}: {
  request: Request;
  server: Bun.Server<unknown> | null;
}): Promise<Response> {
  const startedAt = performance.now();
  let record: LogRecord | undefined;
  if (on('rec')) {
    server?.timeout(request, 0);
    record = {
      time: new Date().toISOString(),
      request_id: Bun.randomUUIDv7(),
      endpoint: 'openai',
      provider: 'openai',
      method: request.method,
      path: '',
      status: 0,
      stream: false,
      model: undefined,
      key: undefined,
      attempts: 0,
      latency_ms: 0,
      ttfb_ms: undefined,
      bytes_in: 0,
      bytes_out: 0,
      usage: undefined,
      error: undefined,
      virtual_key: undefined,
      client_ip: server?.requestIP(request)?.address,
      outcome: 'ok',
      upstream_request_id: undefined,
      retries: [],
    };
  }
  let path: string;
  let query = '';
  if (on('path')) {
    const split = splitPassthroughUrl(request.url, prefix);
    if (!split || !checkPassthroughPath(split.path).ok) return new Response('bad path', { status: 400 });
    path = split.path;
    query = split.query ? `?${split.query}` : '';
  } else {
    const url = request.url;
    path = url.slice(url.indexOf('/', url.indexOf('//') + 2) + prefix.length);
  }
  let headers: Headers;
  if (on('hdr')) {
    headers = forwardRequestHeaders(request.headers, true);
    headers.set('authorization', 'Bearer sk-bench');
  } else {
    headers = new Headers(request.headers);
    headers.delete('host');
  }
  const raw = request.method === 'GET' || request.method === 'HEAD' ? null : await request.arrayBuffer();
  const body = raw && on('u') ? new Uint8Array(raw) : raw;
  if (on('scan') && raw && record) record.model = rootMembers(new Uint8Array(raw))?.model;
  const res = await fetch(upstream + path + query, {
    method: request.method,
    headers,
    body,
    redirect: 'manual',
    decompress: false,
    signal: request.signal,
    ...(on('t') ? { timeout: 300_000 } : {}),
  });
  if (record) record.ttfb_ms = Math.round((performance.now() - startedAt) * 100) / 100;
  let out: Headers;
  if (on('hdr')) {
    out = clientResponseHeaders(res.headers, String(record?.request_id ?? 'id'));
    out.set('x-skybridge-attempts', '1');
  } else {
    out = new Headers(res.headers);
    out.delete('transfer-encoding');
    out.delete('content-length');
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (on('log') && record) {
    const r = record;
    queueMicrotask(() => {
      if (on('usage')) r.usage = usageOfBody('openai', res.headers.get('content-type'), null, bytes);
      r.status = res.status;
      r.latency_ms = Math.round((performance.now() - startedAt) * 100) / 100;
      _batch += `{"log":"request",${JSON.stringify(r).slice(1, -1)}}\n`;
    });
  }
  return new Response(bytes, { status: res.status, headers: out });
}

const app = new Elysia({ handler: { standardHostname: false } });
app.all(`${prefix}/*`, duties.size === 0 ? bare : withDuties, { parse: 'none' });
app.get('/health', () => new Response('ok'));
app.listen({ hostname: '127.0.0.1', port: Number(process.argv[2] ?? 0), idleTimeout: 0, maxRequestBodySize: 1 << 30 });

process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true, port: app.server?.port, pid: process.pid })}\n`);
