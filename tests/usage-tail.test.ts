/**
 * Whole JSON answers: usage is read from the usage object alone when it closes the root
 * object. Every case is checked against parsing the whole body, which is what the fast
 * path must never disagree with on well-formed JSON.
 */
import { describe, expect, test } from 'bun:test';
import { applyUsage, finishUsage } from '../src/usage/extract.ts';
import { usageOfJson } from '../src/usage/scanner.ts';
import { memberKey, rootMemberObject } from '../src/usage/tail.ts';
import type { Usage, UsageFormat } from '../src/usage/types.ts';
import { seededRandom } from './support/random.ts';

const enc = new TextEncoder();

function fullParse(format: UsageFormat, text: string): Usage | undefined {
  const u: Usage = {};
  try {
    applyUsage(format, u, JSON.parse(text));
  } catch {
    // not JSON: no usage
  }
  return finishUsage(format, u);
}

function same(format: UsageFormat, text: string): void {
  expect({ text, usage: usageOfJson(format, enc.encode(text)) }).toEqual({ text, usage: fullParse(format, text) });
}

const chatUsage = {
  prompt_tokens: 12,
  completion_tokens: 7,
  total_tokens: 19,
  prompt_tokens_details: { cached_tokens: 3 },
  completion_tokens_details: { reasoning_tokens: 2 },
};

describe('usage read from the tail of a whole JSON answer', () => {
  test('the usual shapes use the fast path and agree with a full parse', () => {
    const cases: Array<[UsageFormat, string, string]> = [
      [
        'openai',
        'usage',
        JSON.stringify({
          id: 'chatcmpl-1',
          choices: [{ message: { content: 'hi' } }],
          usage: chatUsage,
          system_fingerprint: 'fp_1',
        }),
      ],
      [
        'openai',
        'usage',
        JSON.stringify(
          { id: 'resp_1', output: [], usage: { input_tokens: 5, output_tokens: 9, total_tokens: 14 } },
          null,
          2,
        ),
      ],
      [
        'anthropic',
        'usage',
        JSON.stringify({
          id: 'msg_1',
          content: [{ type: 'text', text: 'x' }],
          usage: { input_tokens: 4, output_tokens: 6, cache_read_input_tokens: 1 },
        }),
      ],
      [
        'gemini',
        'usageMetadata',
        JSON.stringify({
          candidates: [],
          usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 4, thoughtsTokenCount: 2, totalTokenCount: 9 },
          modelVersion: 'gemini-2.5-flash',
        }),
      ],
    ];
    for (const [format, name, text] of cases) {
      const bytes = enc.encode(text);
      const slice = rootMemberObject(bytes, memberKey(name));
      expect(slice).toBeDefined();
      expect(JSON.parse(text.slice(...slice!))).toEqual(JSON.parse(text)[name]);
      same(format, text);
      expect(usageOfJson(format, bytes)).toBeDefined();
    }
  });

  test('shapes the fast path must refuse fall back to a full parse and still agree', () => {
    const nested = JSON.stringify({ response: { usage: chatUsage } });
    expect(rootMemberObject(enc.encode(nested), memberKey('usage'))).toBeUndefined();
    const cases = [
      nested,
      // The last "usage" is nested (metadata), the root's comes earlier.
      JSON.stringify({ usage: chatUsage, metadata: { usage: { prompt_tokens: 1 } } }),
      JSON.stringify({ usage: chatUsage, metadata: { usage: 'none' } }),
      // A member whose name ends in an escaped quote and "usage".
      `{"usage":{"prompt_tokens":2,"completion_tokens":1},"x\\"usage":{"prompt_tokens":99}}`,
      `{"usage":{"prompt_tokens":2,"completion_tokens":1},"x\\\\":"usage","y":1}`,
      // Strings holding the key, braces and quotes.
      JSON.stringify({
        content: '"usage": {"prompt_tokens": 5} }',
        usage: { prompt_tokens: 1, completion_tokens: 1 },
        note: '}{"usage":{',
      }),
      JSON.stringify({ usage: { prompt_tokens: 1, completion_tokens: 2, s: 'a}"b\\' } }),
      JSON.stringify([{ usage: chatUsage }]),
      JSON.stringify({ usage: null }),
      JSON.stringify({ usage: [1, 2] }),
      `${JSON.stringify({ usage: chatUsage })} trailing`,
      '{"usage":{"prompt_tokens":1}',
      '{"usage" :  {"prompt_tokens" : 1 , "completion_tokens":2}  \n }\n',
      '  {"a":1,"usage":{"prompt_tokens":1,"completion_tokens":2}}',
      '{"usage":{"prompt_tokens":1,"completion_tokens":2}}}',
      '{"usage":{"prompt_tokens":1,"completion_tokens":2}]',
      'not json "usage":{"prompt_tokens":1}}',
      '{"usage":{"prompt_tokens":1e400}}',
      '{"usage":{"prompt_tokens":01}}',
    ];
    for (const text of cases) same('openai', text);
  });

  test('random answers with usage anywhere agree with a full parse', () => {
    const rand = seededRandom(2463534242);
    const strings = ['usage', '"usage":{', '}', '{', '\\', '"', '\u2028', 'é', ' ', 'usage"', '\\"usage\\":{}'];
    const value = (depth: number): unknown => {
      switch (rand(depth > 2 ? 3 : 6)) {
        case 0:
          return rand(1000);
        case 1:
          return strings[rand(strings.length)]! + strings[rand(strings.length)]!;
        case 2:
          return rand(2) === 0;
        case 3:
          return Array.from({ length: rand(3) }, () => value(depth + 1));
        case 4:
          return { usage: { prompt_tokens: rand(50), completion_tokens: rand(50) } };
        default: {
          const o: Record<string, unknown> = {};
          for (let i = rand(4); i > 0; i--) o[rand(3) === 0 ? 'usage' : `k${rand(5)}`] = value(depth + 1);
          return o;
        }
      }
    };
    let fast = 0;
    for (let n = 0; n < 3000; n++) {
      const root: Record<string, unknown> = {};
      for (let i = rand(5); i > 0; i--) root[`f${rand(6)}`] = value(1);
      if (rand(4) !== 0)
        root.usage =
          rand(5) === 0 ? value(1) : { prompt_tokens: rand(99), completion_tokens: rand(99), total_tokens: rand(200) };
      // After it: mostly scalars and strings (the usual tail), sometimes more nesting.
      for (let i = rand(3); i > 0; i--) root[`g${rand(6)}`] = rand(4) === 0 ? value(1) : value(3);
      const text = JSON.stringify(root, null, rand(3) === 0 ? 1 : undefined);
      if (rootMemberObject(enc.encode(text), memberKey('usage'))) fast++;
      same('openai', text);
    }
    // The generator puts a root usage object in most documents: the fast path must be taken.
    expect(fast).toBeGreaterThan(1000);
  });
});
