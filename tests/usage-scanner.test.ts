/**
 * The usage scanner's side reading of SSE streams: each API's terminator and error
 * events, seen without parsing the events for them (however the bytes are split into
 * chunks, with or without `event:` lines, CRLF or LF), and the bytes of generated text
 * that make the output estimate of a stream cut short.
 */
import { describe, expect, test } from 'bun:test';
import { gzipSync } from 'node:zlib';
import type { ApiStyle } from '../src/usage/api.ts';
import { apiStyleOf } from '../src/usage/api.ts';
import { ESTIMATE_BYTES_PER_TOKEN, UsageScanner } from '../src/usage/scanner.ts';
import type { UsageFormat } from '../src/usage/types.ts';
import { anthropicStream, chatStream, geminiStream, responsesStream } from './support/mock-upstream.ts';

type Frames = Array<[string | undefined, unknown]>;
const enc = new TextEncoder();

function sseText(frames: Frames, eol = '\n', withEvents = true): string {
  return frames
    .map(
      ([event, data]) =>
        `${event && withEvents ? `event: ${event}${eol}` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}${eol}${eol}`,
    )
    .join('');
}

/** Scans `text` pushed in chunks of `size` bytes; the scanner's view once it ended. */
async function scan(format: UsageFormat, style: ApiStyle, text: string, size = 7, partial = false) {
  const scanner = UsageScanner.for(format, style, 'text/event-stream', null)!;
  const bytes = enc.encode(text);
  for (let i = 0; i < bytes.length; i += size) scanner.push(bytes.subarray(i, i + size));
  await scanner.end();
  return { signal: scanner.signal, usage: scanner.result(partial), estimated: scanner.outputEstimated };
}

const STYLES: Array<[string, UsageFormat, ApiStyle, Frames]> = [
  ['chat', 'openai', 'chat', chatStream('m')],
  ['responses', 'openai', 'responses', responsesStream('m')],
  ['messages', 'anthropic', 'messages', anthropicStream('m')],
  ['gemini', 'gemini', 'generate', geminiStream()],
];

describe('stream terminators', () => {
  for (const [name, format, style, frames] of STYLES) {
    test(`${name}: seen at the end, whatever the chunking and line ends; missing when cut`, async () => {
      for (const eol of ['\n', '\r\n'])
        for (const size of [1, 5, 64, 100_000])
          for (const withEvents of [true, false]) {
            expect((await scan(format, style, sseText(frames, eol, withEvents), size)).signal).toBe('terminator');
            expect((await scan(format, style, sseText(frames.slice(0, -1), eol, withEvents), size)).signal).toBe(
              style === 'generate' && frames.length > 2 ? 'terminator' : undefined,
            );
          }
    });
  }

  test('an event line naming the terminator counts only once its data line arrived', async () => {
    const text = sseText(anthropicStream('m'));
    const cut = text.slice(0, text.lastIndexOf('data:'));
    expect(cut.endsWith('event: message_stop\n')).toBe(true);
    expect((await scan('anthropic', 'messages', cut)).signal).toBeUndefined();
  });

  test('error events: Anthropic and Responses `event: error`, an OpenAI chat `{"error"` data line', async () => {
    const anthropicError = sseText([
      ...anthropicStream('m').slice(0, 3),
      ['error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }],
    ]);
    expect((await scan('anthropic', 'messages', anthropicError)).signal).toBe('error');
    const chatError = sseText([...chatStream('m').slice(0, 2), [undefined, { error: { message: 'boom' } }]]);
    expect((await scan('openai', 'chat', chatError)).signal).toBe('error');
    // Content that merely mentions the words is no signal.
    const words = sseText([
      [undefined, { choices: [{ delta: { content: '{"error" [DONE] message_stop "finishReason"' } }] }],
    ]);
    expect((await scan('openai', 'chat', words)).signal).toBeUndefined();
    expect((await scan('gemini', 'generate', words)).signal).toBeUndefined();
  });

  test('a compressed stream is read on its side path before the verdict', async () => {
    const scanner = UsageScanner.for('openai', 'chat', 'text/event-stream', 'gzip')!;
    scanner.push(gzipSync(enc.encode(sseText(chatStream('m')))));
    await scanner.end();
    expect(scanner.signal).toBe('terminator');
    expect(scanner.result(false)?.output_tokens).toBe(7);
  });
});

describe('the output estimate', () => {
  const deltaText = 'hé ✓ "q"\n😀'; // 1+2+1+3+1+1+1+1+1+4 = 16 bytes of UTF-8, with escapes in JSON
  const bytes = Buffer.byteLength(deltaText);

  test('counts the UTF-8 bytes of generated text in each API, escapes decoded', async () => {
    expect(bytes).toBe(16);
    const cases: Array<[UsageFormat, ApiStyle, Frames]> = [
      ['openai', 'chat', [[undefined, { choices: [{ index: 0, delta: { content: deltaText } }] }]]],
      [
        'openai',
        'chat',
        [[undefined, { choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: deltaText } }] } }] }]],
      ],
      [
        'openai',
        'responses',
        [['response.output_text.delta', { type: 'response.output_text.delta', delta: deltaText }]],
      ],
      [
        'anthropic',
        'messages',
        [['content_block_delta', { type: 'content_block_delta', delta: { type: 'text_delta', text: deltaText } }]],
      ],
      [
        'anthropic',
        'messages',
        [
          [
            'content_block_delta',
            { type: 'content_block_delta', delta: { type: 'thinking_delta', thinking: deltaText } },
          ],
        ],
      ],
    ];
    for (const [format, style, frames] of cases) {
      const got = await scan(format, style, sseText(frames).repeat(3), 3, true);
      expect(got.usage?.output_tokens).toBe(Math.ceil((3 * bytes) / ESTIMATE_BYTES_PER_TOKEN));
      expect(got.estimated).toBe(true);
    }
    // Google writes `"key": "value"`; \u escapes (as Python's json.dumps makes them) count as their bytes.
    const asciiOnly = JSON.stringify(deltaText).replace(
      /[\u0080-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
    );
    const google = `data: {"candidates": [{"content": {"parts": [{"text": ${asciiOnly}}, {"text": "abc"}]}}]}\n\n`;
    expect(google).toContain('\\u00e9');
    const got = await scan('gemini', 'generate', google, 4, true);
    expect(got.usage?.output_tokens).toBe(Math.ceil((bytes + 3) / ESTIMATE_BYTES_PER_TOKEN));
  });

  test('the reported count wins when larger; the total follows the estimate', async () => {
    const text = sseText([
      ...anthropicStream('m').slice(0, 2),
      ['content_block_delta', { type: 'content_block_delta', delta: { type: 'text_delta', text: 'x'.repeat(400) } }],
    ]);
    const cut = await scan('anthropic', 'messages', text, 50, true);
    // message_start said 11 input (+3 cache read, +2 cache write) and 1 output; 400 bytes of text: 100.
    expect(cut.usage).toMatchObject({ input_tokens: 11, output_tokens: 100, total_tokens: 11 + 5 + 100 });
    expect(cut.estimated).toBe(true);
    const whole = await scan('anthropic', 'messages', sseText(anthropicStream('m')), 50, true);
    expect(whole.usage?.output_tokens).toBe(7); // "hello from mock": 15 bytes, 4 tokens by the rule
    expect(whole.estimated).toBe(false);
  });
});

test('API styles from the usage format and the path', () => {
  expect(apiStyleOf('openai', 'POST', '/v1/chat/completions')).toBe('chat');
  expect(apiStyleOf('openai', 'POST', '/openai/deployments/d/chat/completions')).toBe('chat');
  expect(apiStyleOf('openai', 'POST', '/v1beta/openai/chat/completions')).toBe('chat');
  expect(apiStyleOf('openai', 'POST', '/v1/responses')).toBe('responses');
  expect(apiStyleOf('openai', 'GET', '/v1/responses/resp_1')).toBe('other');
  expect(apiStyleOf('openai', 'POST', '/v1/embeddings')).toBe('embeddings');
  expect(apiStyleOf('openai', 'GET', '/v1/models')).toBe('other');
  expect(apiStyleOf('anthropic', 'POST', '/v1/messages')).toBe('messages');
  expect(apiStyleOf('anthropic', 'POST', '/v1/messages/count_tokens')).toBe('other');
  expect(
    apiStyleOf('anthropic', 'POST', '/v1/projects/p/locations/l/publishers/anthropic/models/c:streamRawPredict'),
  ).toBe('messages');
  expect(apiStyleOf('gemini', 'POST', '/v1beta/models/gemini-2.5-flash:streamGenerateContent')).toBe('generate');
  expect(apiStyleOf('gemini', 'POST', '/v1beta/models/gemini-2.5-flash:countTokens')).toBe('other');
});
