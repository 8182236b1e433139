/**
 * Shared by the bench mock upstream and the bench clients: request bodies, the canned
 * LLM answers, and the deterministic byte pattern of the big download (so the client
 * can check the bytes it got without the mock telling it).
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Subprocess, spawn } from 'bun';

/** A chat completion request of about `size` bytes (the user message is the padding). */
export function chatRequestBody(size: number, stream = false): string {
  const head = `{"model":"gpt-4o-mini","stream":${stream},"max_tokens":256,"messages":[{"role":"system","content":"You are a concise assistant."},{"role":"user","content":"`;
  const tail = '"}]}';
  const words = 'Summarise the following notes about the quarterly plan and list the three main risks. ';
  let pad = '';
  const want = Math.max(0, size - head.length - tail.length);
  while (pad.length < want) pad += words;
  return head + pad.slice(0, want) + tail;
}

/** A non-streaming chat completion with usage, about 1 KB. */
export function chatAnswer(): string {
  const content =
    'Here is a short summary of the quarterly plan. The three main risks are: 1) the hiring plan depends on a budget that is not yet approved; 2) the migration of the billing system overlaps with the busiest month; 3) two suppliers have not confirmed delivery dates. Each risk has an owner and a mitigation in the notes; the billing migration can move by four weeks if needed, and a second supplier quote is due next week. Overall the plan is achievable if the budget is approved by the end of the month.';
  return JSON.stringify({
    id: 'chatcmpl-bench0000000000000000000001',
    object: 'chat.completion',
    created: 1764226079,
    model: 'gpt-4o-mini-2024-07-18',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content, refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage: {
      prompt_tokens: 212,
      completion_tokens: 101,
      total_tokens: 313,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    },
    service_tier: 'default',
    system_fingerprint: 'fp_bench',
  });
}

/** One SSE frame of a chat completion stream (`i` of `n`; the last carries usage). */
export function chatStreamFrame(i: number, n: number): string {
  if (i === n) return 'data: [DONE]\n\n';
  const base = {
    id: 'chatcmpl-bench-stream',
    object: 'chat.completion.chunk',
    created: 1764226079,
    model: 'gpt-4o-mini-2024-07-18',
    system_fingerprint: 'fp_bench',
  };
  if (i === n - 1) {
    return `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }], usage: { prompt_tokens: 212, completion_tokens: n - 1, total_tokens: 212 + n - 1 } })}\n\n`;
  }
  return `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: 'Hello' } : { content: ` tok${i}` }, logprobs: null, finish_reason: null }] })}\n\n`;
}

/** Response headers a provider sends with an answer (a realistic count, not an empty set). */
export const PROVIDER_HEADERS: Record<string, string> = {
  'x-request-id': 'req_bench_upstream',
  'openai-organization': 'org-bench',
  'openai-processing-ms': '312',
  'openai-version': '2020-10-01',
  'x-ratelimit-limit-requests': '10000',
  'x-ratelimit-remaining-requests': '9999',
  'x-ratelimit-reset-requests': '6ms',
  'x-ratelimit-limit-tokens': '30000000',
  'x-ratelimit-remaining-tokens': '29999700',
  'x-ratelimit-reset-tokens': '0s',
};

/** Request headers an SDK sends (what wrk and the stream clients send too). */
export const CLIENT_HEADERS: Record<string, string> = {
  'content-type': 'application/json',
  accept: 'application/json',
  authorization: 'Bearer sk-client-dummy',
  'user-agent': 'OpenAI/JS 7.57.0',
  'x-stainless-lang': 'js',
  'x-stainless-package-version': '7.57.0',
  'x-stainless-os': 'Linux',
  'x-stainless-arch': 'x64',
  'x-stainless-runtime': 'node',
  'x-stainless-retry-count': '0',
};

export const PATTERN_CHUNK = 64 * 1024;
const base = (() => {
  const b = new Uint8Array(PATTERN_CHUNK);
  let x = 0x9e3779b9;
  for (let i = 0; i < b.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
})();

/** Chunk `index` of the download pattern: pseudo-random bytes stamped with the index. */
export function patternChunk(index: number, size = PATTERN_CHUNK): Uint8Array {
  const c = base.slice(0, size);
  if (size >= 4) new DataView(c.buffer).setUint32(0, index >>> 0);
  return c;
}

/** sha256 of the first `bytes` bytes of the pattern. */
export function patternSha256(bytes: number): string {
  const h = new Bun.CryptoHasher('sha256');
  for (let i = 0, left = bytes; left > 0; i++, left -= PATTERN_CHUNK)
    h.update(patternChunk(i, Math.min(PATTERN_CHUNK, left)));
  return h.digest('hex');
}

/**
 * The config Skybridge is benchmarked with: one OpenAI key, the mock as upstream, the
 * request log in `logFile`, and these plugins. `tracing` exports every request's spans
 * to the mock's OTLP sink as JSON, `tracing/protobuf` as protobuf; a `@ratio` suffix
 * (`tracing/protobuf@0.1`) sets `tracing.sample_ratio` instead of 1. `default` writes no
 * `plugins:` line: the shipping default list (governance, logging, explorer, metrics,
 * tracing; governance and tracing then off, having no section).
 */
export function skybridgeConfig(
  port: number,
  mockUrl: string,
  logFile: string,
  plugins: readonly string[],
  /** `workers`: server.workers (unset: auto); `governed`: CLIENT_HEADERS' bearer is a virtual key with a rate limit. */
  options: { workers?: number; governed?: boolean } = {},
): string {
  const tracing = plugins.find((p) => p.startsWith('tracing'));
  const [tracingKind, ratio = '1'] = (tracing ?? '').split('@');
  const ids = plugins.map((p) => (p === tracing ? 'tracing' : p));
  const workers = options.workers === undefined ? '' : `, workers: ${options.workers}`;
  return [
    `server: { host: 127.0.0.1, port: ${port}, max_request_body_mb: 128${workers} }`,
    ...(options.governed
      ? [
          // A limit never reached: every request is admitted, after its counter is checked and counted.
          `governance: { virtual_keys: [{ name: bench, value: ${CLIENT_HEADERS.authorization!.slice(7)}, rate_limit: { requests_per_minute: 1000000000 } }] }`,
        ]
      : []),
    `logs: { file: ${JSON.stringify(logFile)} }`,
    ...(ids.length === 1 && ids[0] === 'default' ? [] : [`plugins: [${ids.join(', ')}]`]),
    ...(tracing
      ? [
          `tracing: { endpoint: "${mockUrl}/v1/traces", sample_ratio: ${Number(ratio)}, protocol: ${tracingKind === 'tracing/protobuf' ? 'http/protobuf' : 'http/json'} }`,
        ]
      : []),
    'providers:',
    '  openai:',
    '    keys:',
    '      - { name: bench, value: sk-bench-key, models: ["*"] }',
    `    network_config: { base_url: "${mockUrl}" }`,
    '',
  ].join('\n');
}

/**
 * Skybridge from this tree under the heap probe (heap-probe.ts, writing to `probeFile`),
 * on a free port, its app log on stderr (piped). One process (`workers: 1`): the probe
 * and the RSS the benches read are the serving process's, not a primary's.
 * `server`: more members of the server section (`, shutdown_grace_seconds: 2`).
 */
export function spawnProbedGateway(options: {
  work: string;
  mockUrl: string;
  probeFile: string;
  server?: string;
  env?: Record<string, string>;
}): Subprocess<'ignore', 'ignore', 'pipe'> {
  const configPath = join(options.work, 'config.yaml');
  writeFileSync(
    configPath,
    [
      `server: { host: 127.0.0.1, port: 0, workers: 1${options.server ?? ''} }`,
      `logs: { file: ${JSON.stringify(join(options.work, 'requests.ndjson'))} }`,
      'providers:',
      '  openai:',
      '    keys: [{ name: bench, value: sk-bench-key, models: ["*"] }]',
      `    network_config: { base_url: "${options.mockUrl}" }`,
      '',
    ].join('\n'),
  );
  const root = resolve(import.meta.dir, '../..');
  return spawn(
    [
      process.execPath,
      '--preload',
      join(root, 'scripts/bench/heap-probe.ts'),
      join(root, 'src/main.ts'),
      'serve',
      '--config',
      configPath,
    ],
    {
      cwd: options.work,
      env: { ...process.env, SKYBRIDGE_LOG_LEVEL: 'info', SKYBRIDGE_HEAP_PROBE: options.probeFile, ...options.env },
      stdout: 'ignore',
      stderr: 'pipe',
    },
  );
}
