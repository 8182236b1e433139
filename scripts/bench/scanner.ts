/**
 * Per-chunk cost of reading a stream's usage as it passes (src/usage/scanner.ts), for
 * each API style's stream events, in one process: the scanner of this tree against
 * another tree's (`--other=ROOT`, e.g. main before terminator detection and the output
 * estimate). Each event is one chunk, as providers usually send them.
 *
 *   bun scripts/bench/scanner.ts [--other=/path/to/tree] [--events=200000] [--rounds=5]
 */
import { resolve } from 'node:path';
import { anthropicStream, chatStream, geminiStream, responsesStream } from '../../tests/support/mock-upstream.ts';

const opt = (name: string, def: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def;
const events = Number(opt('events', '200000'));
const rounds = Number(opt('rounds', '5'));
const other = process.argv.find((a) => a.startsWith('--other='))?.slice(8);

type Frames = Array<[string | undefined, unknown]>;
const enc = new TextEncoder();
const sse = (frames: Frames): Uint8Array[] =>
  frames.map(([event, data]) =>
    enc.encode(
      `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`,
    ),
  );

/** A stream's delta event, many times, between its first and last events. */
function stream(frames: Frames, delta: number): Uint8Array[] {
  const chunks = sse(frames);
  const middle = chunks[delta]!;
  return [...chunks.slice(0, delta), ...Array.from({ length: events }, () => middle), ...chunks.slice(delta + 1)];
}

const STREAMS = {
  'openai chat': { format: 'openai', style: 'chat', chunks: stream(chatStream('gpt-4o-mini'), 1) },
  'openai responses': { format: 'openai', style: 'responses', chunks: stream(responsesStream('gpt-4.1'), 1) },
  'anthropic messages': { format: 'anthropic', style: 'messages', chunks: stream(anthropicStream(), 2) },
  'gemini generate': { format: 'gemini', style: 'generate', chunks: stream(geminiStream(), 0) },
} as const;

interface ScannerModule {
  UsageScanner: { for(...args: unknown[]): { push(c: Uint8Array): void; finish(): Promise<unknown> } };
}

async function load(root: string): Promise<ScannerModule> {
  return (await import(resolve(root, 'src/usage/scanner.ts'))) as ScannerModule;
}

async function perChunkNs(mod: ScannerModule, newApi: boolean, s: (typeof STREAMS)[keyof typeof STREAMS]) {
  const scanner = newApi
    ? mod.UsageScanner.for(s.format, s.style, 'text/event-stream', null)
    : mod.UsageScanner.for(s.format, 'text/event-stream', null);
  const t0 = Bun.nanoseconds();
  for (const c of s.chunks) scanner.push(c);
  const ns = (Bun.nanoseconds() - t0) / s.chunks.length;
  await scanner.finish();
  return ns;
}

const trees: Array<[string, ScannerModule, boolean]> = [
  ['this tree', await load(resolve(import.meta.dir, '../..')), true],
];
if (other) trees.push([other, await load(other), false]);
for (const [name, s] of Object.entries(STREAMS)) {
  const best = trees.map(() => Number.POSITIVE_INFINITY);
  for (let r = 0; r < rounds; r++)
    for (const [i, [, mod, newApi]] of trees.entries()) best[i] = Math.min(best[i]!, await perChunkNs(mod, newApi, s));
  console.log(
    `${name.padEnd(20)} ${trees.map(([t], i) => `${t}: ${best[i]!.toFixed(0)} ns/chunk`).join('   ')} (${s.chunks[Math.min(2, s.chunks.length - 1)]!.byteLength} B/chunk)`,
  );
}
