/**
 * Bench clients Bun runs itself (wrk cannot read streams chunk by chunk or hash bodies).
 * Prints one JSON line with the result.
 *
 *   bun client.ts ttfb <url> <count> <chunks> <gapMs>
 *       sequential SSE streams: time to first byte, gaps between reads, reads that
 *       carried more than one frame (batching)
 *   bun client.ts streams <url> <count> <chunks> <gapMs>
 *       <count> concurrent SSE streams started together: durations, completeness
 *   bun client.ts upload <url> <file> <sha256>
 *   bun client.ts download <url> <bytes>
 */
import { CLIENT_HEADERS, chatRequestBody, patternSha256 } from './common.ts';

const [mode, url, ...rest] = process.argv.slice(2);
const streamBody = chatRequestBody(1024, true);
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

const median = (xs: number[]) => quantile(xs, 0.5);
function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

const countFrames = (text: string) => text.split('\n\n').length - 1;

async function oneStream(
  target: string,
  chunks: number,
): Promise<{ ttfb: number; readTimes: number[]; frames: number; batchedReads: number; done: boolean; total: number }> {
  const t0 = performance.now();
  const res = await fetch(target, { method: 'POST', headers: CLIENT_HEADERS, body: streamBody });
  if (!res.body) throw new Error(`no body, status ${res.status}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  const readTimes: number[] = [];
  let frames = 0;
  let batchedReads = 0;
  let text = '';
  let ttfb = NaN;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    const now = performance.now();
    if (readTimes.length === 0) ttfb = now - t0;
    readTimes.push(now);
    const part = dec.decode(r.value, { stream: true });
    const n = countFrames(part);
    // The mock sends the usage frame and [DONE] in one write: that one counts as one.
    if (n > 1 && !part.includes('[DONE]')) batchedReads++;
    frames += n;
    text = text.length > 200 ? text.slice(-200) + part : text + part;
  }
  // chunks data frames + [DONE]
  return {
    ttfb,
    readTimes,
    frames,
    batchedReads,
    done: frames === chunks + 1 && text.includes('data: [DONE]'),
    total: performance.now() - t0,
  };
}

if (mode === 'ttfb') {
  const [count, chunks, gap] = rest.map(Number) as [number, number, number];
  const target = `${url}?stream=1&chunks=${chunks}&gap=${gap}`;
  await oneStream(target, chunks); // warm the connection and the JIT
  const ttfbs: number[] = [];
  const gaps: number[] = [];
  let batched = 0;
  let incomplete = 0;
  for (let i = 0; i < count; i++) {
    const s = await oneStream(target, chunks);
    ttfbs.push(s.ttfb);
    for (let j = 1; j < s.readTimes.length; j++) gaps.push(s.readTimes[j]! - s.readTimes[j - 1]!);
    batched += s.batchedReads;
    if (!s.done) incomplete++;
  }
  out({
    count,
    ttfb_ms: { p50: median(ttfbs), p90: quantile(ttfbs, 0.9), min: Math.min(...ttfbs) },
    gap_ms: { p50: median(gaps), p10: quantile(gaps, 0.1), p90: quantile(gaps, 0.9), n: gaps.length },
    batched_reads: batched,
    incomplete,
  });
} else if (mode === 'streams') {
  const [count, chunks, gap] = rest.map(Number) as [number, number, number];
  const target = `${url}?stream=1&chunks=${chunks}&gap=${gap}`;
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: count }, () =>
      oneStream(target, chunks).then(
        (s) => ({ ok: s.done, total: s.total, ttfb: s.ttfb }),
        (err) => ({ ok: false, total: performance.now() - t0, ttfb: NaN, err: String(err) }),
      ),
    ),
  );
  const ok = results.filter((r) => r.ok);
  const durations = ok.map((r) => r.total);
  const errors = results.filter((r) => !r.ok).map((r) => (r as { err?: string }).err ?? 'incomplete');
  out({
    count,
    completed: ok.length,
    failed: count - ok.length,
    duration_ms: {
      p50: median(durations),
      p99: quantile(durations, 0.99),
      max: durations.length ? Math.max(...durations) : NaN,
    },
    ttfb_ms: { p50: median(ok.map((r) => r.ttfb)), max: ok.length ? Math.max(...ok.map((r) => r.ttfb)) : NaN },
    wall_ms: performance.now() - t0,
    errors: [...new Set(errors)].slice(0, 5),
  });
} else if (mode === 'upload') {
  const [file, sha] = rest as [string, string];
  const t0 = performance.now();
  const res = await fetch(url!, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', authorization: 'Bearer sk-client-dummy' },
    body: Bun.file(file),
  });
  const text = await res.text();
  let got: { bytes?: number; sha256?: string } = {};
  try {
    got = JSON.parse(text);
  } catch {}
  out({
    status: res.status,
    bytes: got.bytes,
    intact: got.sha256 === sha && got.bytes === Bun.file(file).size,
    seconds: (performance.now() - t0) / 1000,
    body: got.sha256 ? undefined : text.slice(0, 200),
  });
} else if (mode === 'download') {
  const bytes = Number(rest[0]);
  const expected = patternSha256(bytes);
  const t0 = performance.now();
  const res = await fetch(`${url}?bytes=${bytes}`, { headers: { authorization: 'Bearer sk-client-dummy' } });
  const hasher = new Bun.CryptoHasher('sha256');
  let n = 0;
  for await (const chunk of res.body!) {
    n += chunk.byteLength;
    hasher.update(chunk);
  }
  out({
    status: res.status,
    bytes: n,
    intact: n === bytes && hasher.digest('hex') === expected,
    seconds: (performance.now() - t0) / 1000,
  });
} else {
  process.stderr.write('usage: bun client.ts ttfb|streams|upload|download ...\n');
  process.exit(2);
}
