/**
 * Amazon Bedrock through /bedrock_passthrough with the AWS SDK for JavaScript's Bedrock
 * Runtime client (dummy credentials, `endpoint` set to the gateway, HTTP/1.1 handler).
 * The mock upstream recomputes the SigV4 signature with the gateway's secret (the AWS
 * SDK's own signer) and answers 403 to anything else, the client's signature included;
 * streams are AWS event-stream frames, sent in pieces that split frames.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { fromUtf8, Hash, toUtf8 } from '@smithy/core/serde';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { SignatureV4 } from '@smithy/signature-v4';
import { UsageScanner, usageOfJson } from '../src/usage/scanner.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MOCK_USAGE, MockUpstream, type Recorded } from './support/mock-upstream.ts';

const U = MOCK_USAGE;
const REGION = 'eu-west-3';
const GATEWAY = { accessKeyId: `AKIA${fakeKey('gw').slice(6, 22).toUpperCase()}`, secretAccessKey: fakeKey('secret') };
const SESSION = { accessKeyId: `ASIA${fakeKey('s').slice(6, 22).toUpperCase()}`, secretAccessKey: fakeKey('s2') };
const SESSION_TOKEN = fakeKey('token');
const ENV_CREDS = { accessKeyId: `AKIA${fakeKey('env').slice(6, 22).toUpperCase()}`, secretAccessKey: fakeKey('env2') };
const API_KEY = fakeKey('bedrock-api-key');
const VK = fakeKey('vk');
const PROFILE_ARN = 'arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-v1:0';
const codec = new EventStreamCodec(toUtf8, fromUtf8);
const Sha256 = Hash.bind(null, 'sha256');

/** Secrets the mock knows, by access key id: the gateway's keys, never the client's. */
const SECRETS = new Map([
  [GATEWAY.accessKeyId, { ...GATEWAY }],
  [SESSION.accessKeyId, { ...SESSION, sessionToken: SESSION_TOKEN }],
  [ENV_CREDS.accessKeyId, { ...ENV_CREDS }],
]);

/** Recomputes the request's SigV4 signature; the access key id that signed, or why not. */
async function verifySigV4(
  req: Request,
  rec: Recorded,
): Promise<{ ok: true; key: string } | { ok: false; why: string }> {
  const auth = rec.headers.authorization ?? '';
  const m =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(
      auth,
    );
  if (!m) return { ok: false, why: 'no SigV4 authorization' };
  const [, keyId, , region, service, signedHeaders] = m;
  const creds = SECRETS.get(keyId!);
  if (!creds) return { ok: false, why: `unknown access key ${keyId}` };
  const headers: Record<string, string> = {};
  for (const name of signedHeaders!.split(';')) headers[name] = rec.headers[name] ?? '';
  const url = new URL(req.url);
  const date = rec.headers['x-amz-date']!;
  const signingDate = new Date(
    `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`,
  );
  const signer = new SignatureV4({ service: service!, region: region!, credentials: creds, sha256: Sha256 as never });
  const signed = await signer.sign(
    {
      method: rec.method,
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      path: rec.path,
      query: Object.fromEntries(new URLSearchParams(rec.query)),
      headers,
      body: rec.body,
    },
    { signingDate },
  );
  if (signed.headers.authorization !== auth) return { ok: false, why: 'signature does not match' };
  if (rec.headers['x-amz-content-sha256'] !== new Bun.CryptoHasher('sha256').update(rec.body).digest('hex'))
    return { ok: false, why: 'payload hash is not the body' };
  return { ok: true, key: keyId! };
}

function frame(eventType: string, payload: unknown): Uint8Array {
  return codec.encode({
    headers: {
      ':event-type': { type: 'string', value: eventType },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'event' },
    },
    body: fromUtf8(JSON.stringify(payload)),
  });
}

/** ConverseStream's events for "hello from mock", usage in the last (metadata). */
function converseStreamFrames(): Uint8Array[] {
  return [
    frame('messageStart', { role: 'assistant', p: 'abcd' }),
    frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'hello ' }, p: 'abcdefgh' }),
    frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'from mock ✓' }, p: 'ab' }),
    frame('contentBlockStop', { contentBlockIndex: 0, p: 'abc' }),
    frame('messageStop', { stopReason: 'end_turn', p: 'abcdef' }),
    frame('metadata', {
      usage: { inputTokens: U.input, outputTokens: U.output, totalTokens: U.input + U.output },
      metrics: { latencyMs: 12 },
      p: 'ab',
    }),
  ];
}

/** InvokeModelWithResponseStream of a Claude model: Anthropic's events, base64 in `chunk` frames. */
function invokeStreamFrames(): Uint8Array[] {
  const events = [
    {
      type: 'message_start',
      message: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        content: [],
        usage: { input_tokens: 3, output_tokens: 1 },
      },
    },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hello from mock' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 5 } },
    {
      type: 'message_stop',
      'amazon-bedrock-invocationMetrics': {
        inputTokenCount: U.input,
        outputTokenCount: U.output,
        invocationLatency: 100,
        firstByteLatency: 50,
      },
    },
  ];
  return events.map((e) => frame('chunk', { bytes: Buffer.from(JSON.stringify(e)).toString('base64'), p: 'abc' }));
}

/** An event-stream answer, written in 7-byte pieces so frames span chunks. */
function eventStream(frames: Uint8Array[]): { response: Response; bytes: Uint8Array } {
  const bytes = new Uint8Array(Buffer.concat(frames));
  let at = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + 7));
      at += 7;
      if (at % 70 === 0) await Bun.sleep(1);
    },
  });
  return {
    bytes,
    response: new Response(body, {
      headers: { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'req-bedrock-1' },
    }),
  };
}

let mock: MockUpstream;
let gw: TestGateway;
let lastSent: Uint8Array | undefined;
/** Who signed each request that reached the mock. */
const signers: string[] = [];

function respond(): void {
  mock.respondWith(async (req, rec) => {
    if (rec.headers.authorization?.startsWith('Bearer ')) {
      if (rec.headers.authorization !== `Bearer ${API_KEY}`)
        return Response.json({ message: 'bad key' }, { status: 403 });
      signers.push('api-key');
    } else {
      const v = await verifySigV4(req, rec);
      if (!v.ok) return Response.json({ message: v.why }, { status: 403 });
      signers.push(v.key);
    }
    const action = rec.path.slice(rec.path.lastIndexOf('/') + 1);
    if (action === 'converse')
      return Response.json({
        output: { message: { role: 'assistant', content: [{ text: 'hello from mock' }] } },
        stopReason: 'end_turn',
        usage: { inputTokens: U.input, outputTokens: U.output, totalTokens: U.input + U.output },
        metrics: { latencyMs: 12 },
      });
    const stream = eventStream(action === 'converse-stream' ? converseStreamFrames() : invokeStreamFrames());
    lastSent = stream.bytes;
    return stream.response;
  });
}

function client(opts: { vk?: string; endpoint?: string } = {}): BedrockRuntimeClient {
  const c = new BedrockRuntimeClient({
    region: REGION,
    endpoint: opts.endpoint ?? `${gw.url}/bedrock_passthrough`,
    credentials: { accessKeyId: 'AKIDCLIENTONLY0000000', secretAccessKey: 'client-secret-never-forwarded' },
    // The SDK's default handler speaks HTTP/2, which Bun's server does not.
    requestHandler: new NodeHttpHandler(),
    maxAttempts: 1,
  });
  if (opts.vk) {
    const vk = opts.vk;
    c.middlewareStack.add(
      (next) => (args) => {
        (args.request as { headers: Record<string, string> }).headers['x-bf-vk'] = vk;
        return next(args);
      },
      { step: 'build' },
    );
  }
  return c;
}

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    providers: {
      bedrock: {
        keys: [
          {
            name: 'static',
            models: ['anthropic.*', 'amazon.*'],
            bedrock_key_config: { ...keyConfig(GATEWAY), region: REGION },
          },
          {
            name: 'profiles',
            models: ['arn:aws:bedrock:*', 'my-claude'],
            bedrock_key_config: {
              ...keyConfig(SESSION),
              session_token: SESSION_TOKEN,
              region: REGION,
              deployments: { 'my-claude': 'eu.anthropic.claude-sonnet-4-v1:0' },
            },
          },
          { name: 'api-key', value: API_KEY, models: ['meta.*'], bedrock_key_config: { region: REGION } },
          { name: 'chain', models: ['mistral.*'], bedrock_key_config: { region: REGION } },
        ],
        network_config: { base_url: mock.url },
      },
    },
    governance: {
      virtual_keys: [{ name: 'team', value: VK, providers: ['bedrock'], models: ['anthropic.claude*'] }],
    },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => {
  mock.reset();
  signers.length = 0;
  respond();
});

function keyConfig(c: { accessKeyId: string; secretAccessKey: string }) {
  return { access_key: c.accessKeyId, secret_key: c.secretAccessKey };
}

describe('the AWS SDK for JavaScript (Bedrock Runtime) through /bedrock_passthrough', () => {
  test('the mock refuses the client signature: an SDK pointed at it directly fails', async () => {
    const direct = client({ endpoint: mock.url });
    await expect(
      direct.send(
        new ConverseCommand({ modelId: 'anthropic.claude-v2', messages: [{ role: 'user', content: [{ text: 'x' }] }] }),
      ),
    ).rejects.toThrow('unknown access key AKIDCLIENTONLY0000000');
  });

  test('ConverseCommand: re-signed with the key, client signature dropped, usage logged', async () => {
    const answer = await client().send(
      new ConverseCommand({
        modelId: 'anthropic.claude-3-haiku-20240307-v1:0',
        messages: [{ role: 'user', content: [{ text: 'hello' }] }],
      }),
    );
    expect(answer.output?.message?.content?.[0]?.text).toBe('hello from mock');
    expect(answer.usage).toEqual({ inputTokens: U.input, outputTokens: U.output, totalTokens: U.input + U.output });
    expect(signers).toEqual([GATEWAY.accessKeyId]);
    const rec = mock.last;
    expect(rec.path).toBe('/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse');
    expect(rec.headers.authorization).toContain(`Credential=${GATEWAY.accessKeyId}/`);
    expect(rec.headers.authorization).toContain(`/${REGION}/bedrock/aws4_request`);
    expect(JSON.stringify(rec.headers)).not.toContain('AKIDCLIENTONLY');
    expect(rec.headers['x-amz-security-token']).toBeUndefined();
    // The verifier is not a formality: the same request with one body byte or one signed
    // header changed fails.
    const url = `${mock.url}${rec.path}`;
    const body = new Uint8Array(rec.body).map((b, i) => (i === 2 ? b ^ 1 : b));
    expect(await verifySigV4(new Request(url, { method: 'POST' }), { ...rec, body })).toEqual({
      ok: false,
      why: 'payload hash is not the body',
    });
    const headers = { ...rec.headers, 'content-type': 'text/plain' };
    expect(await verifySigV4(new Request(url, { method: 'POST' }), { ...rec, headers })).toEqual({
      ok: false,
      why: 'signature does not match',
    });
    expect((await verifySigV4(new Request(url, { method: 'POST' }), rec)).ok).toBe(true);
    const line = await gw.waitForLine((l) => l.path?.endsWith('/converse'));
    expect(line).toMatchObject({
      endpoint: 'bedrock',
      provider: 'bedrock',
      model: 'anthropic.claude-3-haiku-20240307-v1:0',
      key: 'static',
      status: 200,
      stream: false,
      usage: { input_tokens: U.input, output_tokens: U.output, total_tokens: U.input + U.output },
    });
  });

  test('ConverseStreamCommand: frames split across chunks reach the SDK intact; usage from the metadata event', async () => {
    const out = await client().send(
      new ConverseStreamCommand({
        modelId: 'anthropic.claude-3-haiku-20240307-v1:0',
        messages: [{ role: 'user', content: [{ text: 'hello' }] }],
      }),
    );
    let text = '';
    let usage: unknown;
    for await (const event of out.stream!) {
      if (event.contentBlockDelta) text += event.contentBlockDelta.delta?.text ?? '';
      if (event.metadata) usage = event.metadata.usage;
    }
    expect(text).toBe('hello from mock ✓');
    expect(usage).toEqual({ inputTokens: U.input, outputTokens: U.output, totalTokens: U.input + U.output });
    const line = await gw.waitForLine((l) => l.path?.endsWith('/converse-stream'));
    expect(line).toMatchObject({ stream: true, status: 200, key: 'static', outcome: 'ok' });
    expect(line.usage).toEqual({ input_tokens: U.input, output_tokens: U.output, total_tokens: U.input + U.output });
  });

  test('InvokeModelWithResponseStreamCommand with an inference profile ARN: the model is the decoded ARN; invocation metrics are the usage', async () => {
    const out = await client().send(
      new InvokeModelWithResponseStreamCommand({
        modelId: PROFILE_ARN,
        contentType: 'application/json',
        body: JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 10, messages: [] }),
      }),
    );
    const events: any[] = [];
    for await (const e of out.body!)
      if (e.chunk?.bytes) events.push(JSON.parse(new TextDecoder().decode(e.chunk.bytes)));
    expect(events.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(mock.last.path).toBe(`/model/${encodeURIComponent(PROFILE_ARN)}/invoke-with-response-stream`);
    // The key for ARNs (models: ["arn:aws:bedrock:*"]) has a session token: signed with it.
    expect(signers).toEqual([SESSION.accessKeyId]);
    expect(mock.last.headers['x-amz-security-token']).toBe(SESSION_TOKEN);
    const line = await gw.waitForLine((l) => l.path?.endsWith('/invoke-with-response-stream'));
    expect(line).toMatchObject({ model: PROFILE_ARN, key: 'profiles', stream: true });
    expect(line.usage).toEqual({ input_tokens: U.input, output_tokens: U.output, total_tokens: U.input + U.output });
  });

  test('stream bytes reach the client byte for byte', async () => {
    const res = await fetch(`${gw.url}/bedrock_passthrough/model/anthropic.claude-v2/converse-stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"messages":[]}',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/vnd.amazon.eventstream');
    const got = new Uint8Array(await res.arrayBuffer());
    expect(Buffer.compare(got, lastSent!)).toBe(0);
  });
});

describe('keys and governance', () => {
  test('a deployment maps the model to the id sent upstream; the log keeps the requested model', async () => {
    await client().send(
      new ConverseCommand({ modelId: 'my-claude', messages: [{ role: 'user', content: [{ text: 'hi' }] }] }),
    );
    expect(mock.last.path).toBe(`/model/${encodeURIComponent('eu.anthropic.claude-sonnet-4-v1:0')}/converse`);
    expect(signers).toEqual([SESSION.accessKeyId]);
    const line = await gw.waitForLine((l) => l.model === 'my-claude');
    expect(line).toMatchObject({ key: 'profiles', path: '/model/my-claude/converse', status: 200 });
    // A model no key allows is refused before any upstream call.
    const res = await fetch(`${gw.url}/passthrough/bedrock/model/cohere.command-r/converse`, {
      method: 'POST',
      body: '{}',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.type).toBe('no_key_for_model');
    expect(mock.requests.length).toBe(1);
  });

  test('a Bedrock API key (value) is sent as Authorization: Bearer, unsigned', async () => {
    const res = await fetch(`${gw.url}/bedrock_passthrough/model/meta.llama3-8b-instruct-v1%3A0/converse`, {
      method: 'POST',
      headers: { authorization: 'Bearer client-token', 'x-amz-date': '20200101T000000Z' },
      body: '{"messages":[]}',
    });
    expect(res.status).toBe(200);
    expect(signers).toEqual(['api-key']);
    expect(mock.last.headers['x-amz-date']).toBeUndefined();
    expect(mock.last.headers['x-amz-content-sha256']).toBeUndefined();
  });

  test('no credentials in the key: the AWS default chain (here the environment) signs', async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = ENV_CREDS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = ENV_CREDS.secretAccessKey;
    try {
      await client().send(
        new ConverseCommand({ modelId: 'mistral.large', messages: [{ role: 'user', content: [{ text: 'hi' }] }] }),
      );
      expect(signers).toEqual([ENV_CREDS.accessKeyId]);
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved.id;
      process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    }
  });

  test('a virtual key limits models read from the path (x-bf-vk from an SDK middleware)', async () => {
    const ok = await client({ vk: VK }).send(
      new ConverseCommand({
        modelId: 'anthropic.claude-3-haiku-20240307-v1:0',
        messages: [{ role: 'user', content: [{ text: 'hi' }] }],
      }),
    );
    expect(ok.output?.message?.content?.[0]?.text).toBe('hello from mock');
    expect(mock.last.headers['x-bf-vk']).toBeUndefined();
    const before = mock.requests.length;
    await expect(
      client({ vk: VK }).send(
        new ConverseCommand({
          modelId: 'amazon.titan-text-express-v1',
          messages: [{ role: 'user', content: [{ text: 'x' }] }],
        }),
      ),
    ).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
    expect(mock.requests.length).toBe(before);
    const line = await gw.waitForLine((l) => l.model === 'amazon.titan-text-express-v1');
    expect(line.error?.type ?? line.error_type).toBe('model_not_allowed');
  });

  test('a body too large to hold cannot be signed: 413 naming the limit, nothing sent', async () => {
    const small = await startGateway({
      server: { buffer_body_limit_mb: 0.01 },
      providers: {
        bedrock: {
          keys: [{ name: 'k', bedrock_key_config: keyConfig(GATEWAY) }],
          network_config: { base_url: mock.url },
        },
      },
    });
    try {
      const res = await fetch(`${small.url}/bedrock_passthrough/model/anthropic.claude-v2/invoke`, {
        method: 'POST',
        body: JSON.stringify({ prompt: 'x'.repeat(20_000) }),
      });
      expect(res.status).toBe(413);
      const body = (await res.json()) as any;
      expect(body.error.type).toBe('payload_too_large');
      expect(body.error.message).toContain('server.buffer_body_limit_mb');
      expect(mock.requests.length).toBe(0);
    } finally {
      await small.stop();
    }
  });

  test('without keys Bedrock is refused (a client signature cannot be forwarded)', async () => {
    const bare = await startGateway({});
    try {
      const res = await fetch(`${bare.url}/bedrock_passthrough/model/anthropic.claude-v2/converse`, {
        method: 'POST',
        body: '{}',
      });
      expect(res.status).toBe(500);
      expect(((await res.json()) as any).error.type).toBe('provider_not_configured');
    } finally {
      await bare.stop();
    }
  });
});

describe('retries and the usage reader', () => {
  test('a retry is signed again over the same bytes', async () => {
    const t = await startGateway({
      providers: {
        bedrock: {
          keys: [{ name: 'k', bedrock_key_config: { ...keyConfig(GATEWAY), region: REGION } }],
          network_config: { base_url: mock.url, max_retries: 1, retry_backoff_initial: 1, retry_backoff_max: 2 },
        },
      },
    });
    try {
      let first = true;
      mock.respondWith((req, rec) => {
        if (!first) return undefined;
        first = false;
        return verifySigV4(req, rec).then((v) => {
          if (v.ok) signers.push(v.key);
          return Response.json({ message: 'slow down' }, { status: 503 });
        });
      });
      const answer = await client({ endpoint: `${t.url}/bedrock_passthrough` }).send(
        new ConverseCommand({
          modelId: 'anthropic.claude-v2',
          messages: [{ role: 'user', content: [{ text: 'hi' }] }],
        }),
      );
      expect(answer.usage?.totalTokens).toBe(U.input + U.output);
      expect(mock.requests.length).toBe(2);
      // Both attempts carry a valid signature of their own (one set of SigV4 headers each).
      expect(signers).toEqual([GATEWAY.accessKeyId, GATEWAY.accessKeyId]);
      const [a, b] = mock.requests;
      expect(Buffer.compare(a!.body, b!.body)).toBe(0);
      expect(b!.headers['x-amz-content-sha256']).toBe(a!.headers['x-amz-content-sha256']);
      expect(b!.headers.authorization!.match(/Signature=/g)).toHaveLength(1);
    } finally {
      await t.stop();
    }
  });

  test('event stream endings: metadata (Converse) or invocation metrics (Invoke) end it; a cut one gets the estimate', async () => {
    const scan = async (frames: Uint8Array[], partial: boolean) => {
      const scanner = UsageScanner.for('bedrock', 'bedrock', 'application/vnd.amazon.eventstream', null)!;
      const bytes = new Uint8Array(Buffer.concat(frames));
      for (let at = 0; at < bytes.length; at += 5) scanner.push(bytes.slice(at, at + 5));
      await scanner.end();
      return { signal: scanner.signal, usage: scanner.result(partial), estimated: scanner.outputEstimated };
    };
    expect((await scan(converseStreamFrames(), false)).signal).toBe('terminator');
    expect((await scan(invokeStreamFrames(), false)).signal).toBe('terminator');
    // Cut before metadata: no terminator; output from "hello " + "from mock ✓" (19 bytes: 5 tokens by the rule).
    const converse = await scan(converseStreamFrames().slice(0, -1), true);
    expect(converse).toEqual({ signal: undefined, usage: { output_tokens: 5, total_tokens: 5 }, estimated: true });
    // Cut before the last chunk: Anthropic's message_start and message_delta said 3 in, 5 out;
    // "hello from mock" is 15 bytes (4 by the rule): the reported count stands.
    const invoke = await scan(invokeStreamFrames().slice(0, -1), true);
    expect(invoke.signal).toBeUndefined();
    expect(invoke.usage).toMatchObject({ input_tokens: 3, output_tokens: 5 });
    expect(invoke.estimated).toBe(false);
    const exception = codec.encode({
      headers: {
        ':exception-type': { type: 'string', value: 'throttlingException' },
        ':content-type': { type: 'string', value: 'application/json' },
        ':message-type': { type: 'string', value: 'exception' },
      },
      body: fromUtf8(JSON.stringify({ message: 'slow down' })),
    });
    expect((await scan([...converseStreamFrames().slice(0, 2), exception], true)).signal).toBe('error');
  });

  test('a ConverseStream the upstream cuts before its metadata: the AWS SDK raises, logged upstream_eof_no_terminator', async () => {
    mock.reset();
    mock.respondWith((_req, rec) =>
      rec.path.endsWith('/converse-stream') ? eventStream(converseStreamFrames().slice(0, 3)).response : undefined,
    );
    const out = await client().send(
      new ConverseStreamCommand({
        modelId: 'anthropic.claude-3-haiku-20240307-v1:0',
        messages: [{ role: 'user', content: [{ text: 'cut me' }] }],
      }),
    );
    let text = '';
    let raised: unknown;
    try {
      for await (const event of out.stream!) text += event.contentBlockDelta?.delta?.text ?? '';
    } catch (err) {
      raised = err;
    }
    expect(raised).toBeDefined();
    expect(text).toBe('hello from mock ✓'); // what was relayed arrived before the abort
    const line = await gw.waitForLine((l) => l.path?.endsWith('/converse-stream') && l.end_reason !== 'complete');
    expect(line).toMatchObject({
      status: 200,
      outcome: 'upstream_error',
      end_reason: 'upstream_eof_no_terminator',
      usage_status: 'partial',
      output_tokens_estimated: true,
      usage: { output_tokens: 5 },
    });
  });

  test('event stream: a frame with a bad CRC is skipped, the framing holds; a cut stream costs nothing', async () => {
    const frames = converseStreamFrames();
    const bad = frames[1]!.slice();
    bad[bad.length - 1]! ^= 0xff;
    const scanner = UsageScanner.for('bedrock', 'bedrock', 'application/vnd.amazon.eventstream', null)!;
    expect(scanner.keepsChunks).toBe(false);
    const bytes = new Uint8Array(Buffer.concat([frames[0]!, bad, ...frames.slice(2)]));
    for (let at = 0; at < bytes.length; at += 5) scanner.push(bytes.slice(at, at + 5));
    expect(await scanner.finish()).toEqual({
      input_tokens: U.input,
      output_tokens: U.output,
      total_tokens: U.input + U.output,
    });
    const cut = UsageScanner.for('bedrock', 'bedrock', 'application/vnd.amazon.eventstream', null)!;
    cut.push(bytes.subarray(0, bytes.length - 10));
    expect(await cut.finish()).toBeUndefined();
    // A length no message has: the rest is not read (no huge buffer), nothing throws.
    const lost = UsageScanner.for('bedrock', 'bedrock', 'application/vnd.amazon.eventstream', null)!;
    lost.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    lost.push(frames.at(-1)!);
    expect(await lost.finish()).toBeUndefined();
  });

  test('InvokeModel answers in the model shape: Anthropic usage, Llama counts', () => {
    const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
    expect(
      usageOfJson(
        'bedrock',
        enc({ id: 'msg', content: [], usage: { input_tokens: 5, output_tokens: 2, cache_read_input_tokens: 3 } }),
      ),
    ).toEqual({ input_tokens: 5, output_tokens: 2, cache_read_input_tokens: 3, total_tokens: 10 });
    expect(
      usageOfJson(
        'bedrock',
        enc({ generation: 'hi', prompt_token_count: 9, generation_token_count: 4, stop_reason: 'stop' }),
      ),
    ).toEqual({ input_tokens: 9, output_tokens: 4, total_tokens: 13 });
  });
});
