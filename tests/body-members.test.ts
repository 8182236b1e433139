/**
 * `model` and `stream` are read from request bodies without parsing them. On every
 * well-formed body the answer must be what JSON.parse gives; bodies whose structure
 * cannot be followed give nothing, as JSON.parse would.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import type { StaticPlugin } from '../src/core/plugin.ts';
import type { RequestContext } from '../src/core/request.ts';
import { rootMembers } from '../src/proxy/members.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MockUpstream } from './support/mock-upstream.ts';
import { seededRandom } from './support/random.ts';

const enc = new TextEncoder();

/** What the flow took from JSON.parse before: a string model, `stream === true`, for root objects only. */
function byParse(text: string): { model: string | undefined; stream: boolean } | undefined {
  let v: unknown;
  try {
    // As the flow parsed bodies before: bytes decoded by TextDecoder (which drops one BOM).
    v = JSON.parse(new TextDecoder().decode(enc.encode(text)));
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  return { model: typeof o.model === 'string' ? o.model : undefined, stream: o.stream === true };
}

function agrees(text: string): void {
  expect({ text, got: rootMembers(enc.encode(text)) }).toEqual({ text, got: byParse(text) });
}

describe('model and stream of a request body, without parsing it', () => {
  test('SDK-shaped bodies', () => {
    for (const body of [
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      {
        messages: [{ role: 'user', content: 'hi "model": "x"' }],
        model: 'gpt-4o',
        stream: true,
        stream_options: { include_usage: true },
      },
      {
        model: 'claude-sonnet-4-5',
        max_tokens: 10,
        stream: false,
        system: [{ type: 'text', text: '{"stream": true}' }],
      },
      { contents: [{ role: 'user', parts: [{ text: 'model' }] }], generationConfig: { model: 'nested', stream: true } },
      { model: 'projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash', contents: [] },
      { model: 'gpt-4o ✓ ünï \u2028 \ud83d\ude00', input: 'x' },
      { model: 'tab\tnew\nline "quoted" back\\slash', stream: true },
      {},
      { model: 42, stream: 'true' },
      { model: null, stream: 1 },
      { model: '', stream: true },
    ]) {
      agrees(JSON.stringify(body));
      agrees(JSON.stringify(body, null, 2));
    }
  });

  test('hand-made edge cases agree with JSON.parse', () => {
    for (const text of [
      '{"model":"a","model":"b"}',
      '{"model":"a","model":7}',
      '{"stream":true,"stream":false}',
      '{"mod\\u0065l":"escaped name","str\\u0065am":true}',
      '{"model":"\\u0067pt-4o"}',
      '{"model":"a\\\\","stream":true}',
      '{"x":"\\\\\\"","model":"after escapes"}',
      ' \n\t{ "model" : "spaced" , "stream" : true } \r\n',
      '{"a":[1,2,{"b":[]}],"model":"after arrays","c":-1.5e3,"d":null,"e":false}',
      '{"model":"x"}{"model":"y"}',
      '{"model":"x"} trailing',
      '{"model":"x",}',
      '{"model":"x"',
      '{"model":"unterminated}',
      '{"a":[1,2,3}',
      '[{"model":"in an array"}]',
      '"just a string"',
      '42',
      '',
      '{',
      '}',
      '{model:"bare"}',
      '{"model" "no colon"}',
      '{"stream":truex}',
      '\uFEFF{"model":"after a byte order mark","stream":true}',
      '\uFEFF\uFEFF{"model":"two marks"}',
    ]) {
      const got = rootMembers(enc.encode(text));
      const parsed = byParse(text);
      // Where JSON.parse reads a model, the scan must read the same one.
      if (parsed) expect({ text, got }).toEqual({ text, got: parsed });
      // Where the structure is broken the scan must give nothing too.
      else if (!/truex/.test(text)) expect({ text, got }).toEqual({ text, got: undefined });
    }
  });

  test('random bodies agree with JSON.parse', () => {
    const rand = seededRandom(88172645);
    const pieces = ['model', 'stream', '"', '\\', '{', '}', '[', ']', ':', ',', 'é', '\u0000', '\n', '💡', 'true', ' '];
    const str = () => Array.from({ length: rand(6) }, () => pieces[rand(pieces.length)]).join('');
    const value = (depth: number): unknown => {
      switch (rand(depth > 3 ? 5 : 7)) {
        case 0:
          return rand(2) ? rand(1e6) : -rand(1000) / 7;
        case 1:
          return str();
        case 2:
          return rand(2) === 0;
        case 3:
          return null;
        case 4:
          return rand(3) === 0 ? 'gpt-4o' : str();
        case 5:
          return Array.from({ length: rand(4) }, () => value(depth + 1));
        default: {
          const o: Record<string, unknown> = {};
          for (let i = rand(4); i > 0; i--) o[[str(), 'model', 'stream'][rand(3)]!] = value(depth + 1);
          return o;
        }
      }
    };
    for (let n = 0; n < 5000; n++) {
      const root: Record<string, unknown> = {};
      for (let i = rand(6); i > 0; i--) root[[str(), 'model', 'stream', 'messages'][rand(4)]!] = value(1);
      const text = JSON.stringify(rand(4) === 0 ? [root] : root, null, rand(4) === 0 ? 1 : undefined);
      agrees(text);
    }
  });

  test('a megabyte of messages', () => {
    const body = {
      messages: Array.from({ length: 2000 }, (_, i) => ({
        role: 'user',
        content: `message ${i} "quoted" ${'x'.repeat(480)}`,
      })),
      model: 'gpt-4o',
      stream: true,
    };
    agrees(JSON.stringify(body));
  });
});

describe('in the gateway', () => {
  let mock: MockUpstream;
  let gw: TestGateway;
  const seen: Array<{ model: string | undefined; stream: boolean | undefined; json: unknown }> = [];
  // A plugin that reads ctx.json: parsed for it on first use.
  const reader: StaticPlugin = {
    name: 'json-reader',
    onRequest(ctx: RequestContext) {
      seen.push({ model: ctx.model, stream: ctx.members?.stream, json: ctx.json });
      return undefined;
    },
  };

  beforeAll(async () => {
    mock = new MockUpstream();
    gw = await startGateway(
      {
        providers: {
          openai: {
            keys: [{ name: 'k', value: fakeKey(), models: ['gpt-4o*'] }],
            network_config: { base_url: mock.url },
          },
        },
      },
      process.env,
      [reader],
    );
  });
  afterAll(async () => {
    await gw.stop();
    await mock.stop();
  });

  const post = (body: string, contentType = 'application/json') =>
    fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
    });

  test('plugins still get the parsed body as ctx.json; the upstream gets the bytes as sent', async () => {
    const body = '{"messages":[{"role":"user","content":"say \\"hi\\""}],\n "model" : "gpt-4o-mini", "stream": false}';
    const res = await post(body);
    expect(res.status).toBe(200);
    expect(new TextDecoder().decode(mock.last.body)).toBe(body);
    expect(seen.at(-1)).toEqual({ model: 'gpt-4o-mini', stream: false, json: JSON.parse(body) });
  });

  test('a body that is not JSON names no model, and has no ctx.json', async () => {
    const res = await post('model: gpt-4o');
    // No model: only a key with a non-empty models list may serve it (this one).
    expect(res.status).toBe(200);
    expect(seen.at(-1)).toEqual({ model: undefined, stream: undefined, json: undefined });
  });

  test('malformed inside a value: the model is read (the upstream judges the JSON), ctx.json stays undefined', async () => {
    // A raw U+0001 inside a string: JSON.parse refuses it.
    const body = '{"model":"gpt-4o","note":"raw\u0001control"}';
    const res = await post(body);
    expect(res.status).toBe(200);
    expect(new TextDecoder().decode(mock.last.body)).toBe(body);
    expect(seen.at(-1)).toEqual({ model: 'gpt-4o', stream: false, json: undefined });
  });

  test('a JSON object sent as text/plain (or with no JSON type) is read for its model all the same', async () => {
    // JavaScript's fetch labels a string body text/plain; the upstream may parse it anyway.
    await post('{"model":"gpt-4o"}', 'text/plain;charset=UTF-8');
    expect(seen.at(-1)!.model).toBe('gpt-4o');
    await post('{"model":"o3"}', 'application/x-www-form-urlencoded');
    expect(seen.at(-1)!.model).toBe('o3');
  });

  const postEncoded = (bytes: Uint8Array<ArrayBuffer>, encoding: string) =>
    fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': encoding },
      body: bytes,
    });

  test('a compressed body (gzip, deflate, br) is read for its model; the compressed bytes are forwarded', async () => {
    const text = JSON.stringify({
      model: 'gpt-4o-mini',
      stream: true,
      messages: [{ role: 'user', content: 'hé '.repeat(500) }],
    });
    for (const [encoding, bytes] of [
      ['gzip', gzipSync(text)],
      ['deflate', deflateSync(text)],
      ['br', brotliCompressSync(text)],
    ] as const) {
      const sent = new Uint8Array(bytes);
      await postEncoded(sent, encoding);
      expect(seen.at(-1)).toMatchObject({ model: 'gpt-4o-mini', stream: true, json: JSON.parse(text) });
      expect(Buffer.from(mock.last.body).equals(Buffer.from(sent))).toBe(true);
      expect(mock.last.headers['content-encoding']).toBe(encoding);
    }
  });

  test('a compressed body that cannot be read (unknown coding, corrupt, too large inflated) names no model', async () => {
    await postEncoded(new Uint8Array(gzipSync('{"model":"gpt-4o"}')), 'zstd');
    expect(seen.at(-1)!.model).toBeUndefined();
    await postEncoded(new Uint8Array([0x1f, 0x8b, 1, 2, 3]), 'gzip');
    expect(seen.at(-1)!.model).toBeUndefined();
    // 9 MB of JSON squeezed into a few KB: past the 8 MB buffer limit once inflated.
    const bomb = new Uint8Array(gzipSync(`{"model":"gpt-4o","pad":"${'x'.repeat(9 * 1024 * 1024)}"}`));
    expect(bomb.byteLength).toBeLessThan(64 * 1024);
    await postEncoded(bomb, 'gzip');
    expect(seen.at(-1)!.model).toBeUndefined();
  });
});
