/**
 * A local stand-in for every provider API: it records exactly what reached it (method,
 * path, query, headers, body bytes) and answers like the real API would, JSON or SSE,
 * with known token usage. Tests may replace the answer per request with `respondWith`.
 */
import type { Server } from 'bun';

export interface Recorded {
  method: string;
  /** Path as received, percent-encoding kept. */
  path: string;
  /** Raw query without "?". */
  query: string;
  headers: Record<string, string>;
  body: Uint8Array<ArrayBuffer>;
  json: any;
}

export type Responder = (req: Request, rec: Recorded) => Response | Promise<Response> | undefined;

/** Token numbers every mock answer reports, so tests can compare the log with them. */
export const MOCK_USAGE = { input: 11, output: 7, cacheRead: 3, cacheWrite: 2 } as const;

export class MockUpstream {
  readonly requests: Recorded[] = [];
  private responders: Responder[] = [];
  private readonly server: Server<unknown>;
  /** Streams the mock is still writing (to check aborts reach it). */
  openStreams = 0;
  abortedStreams = 0;

  constructor(port = 0) {
    this.server = Bun.serve({
      hostname: '127.0.0.1',
      port,
      idleTimeout: 0,
      fetch: (req) => this.handle(req),
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.port}`;
  }

  get last(): Recorded {
    const r = this.requests.at(-1);
    if (!r) throw new Error('mock upstream received no request');
    return r;
  }

  /** Answer the next requests with this responder first (returning undefined falls through). */
  respondWith(r: Responder): this {
    this.responders.unshift(r);
    return this;
  }

  reset(): void {
    this.requests.length = 0;
    this.responders = [];
  }

  async stop(): Promise<void> {
    await this.server.stop(true);
  }

  private async handle(req: Request): Promise<Response> {
    const url = req.url;
    const pathStart = url.indexOf('/', url.indexOf('//') + 2);
    const q = url.indexOf('?', pathStart);
    const path = q < 0 ? url.slice(pathStart) : url.slice(pathStart, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    const body = new Uint8Array(await req.arrayBuffer());
    let json: any;
    try {
      json = body.byteLength ? JSON.parse(new TextDecoder().decode(body)) : undefined;
    } catch {
      json = undefined;
    }
    const rec: Recorded = { method: req.method, path, query, headers: Object.fromEntries(req.headers), body, json };
    this.requests.push(rec);
    for (const r of this.responders) {
      const res = await r(req, rec);
      if (res) return res;
    }
    return this.defaultAnswer(req, rec);
  }

  private defaultAnswer(req: Request, rec: Recorded): Response {
    const p = rec.path;
    if (p.endsWith('/token'))
      return Response.json({ access_token: 'ya29.mock-token', expires_in: 3600, token_type: 'Bearer' });
    if (p.includes(':streamGenerateContent')) return this.sse(req, geminiStream());
    if (p.includes(':generateContent')) return Response.json(geminiAnswer());
    if (p.endsWith('/messages'))
      return rec.json?.stream
        ? this.sse(req, anthropicStream(rec.json.model))
        : Response.json(anthropicAnswer(rec.json?.model));
    if (p.endsWith('/responses'))
      return rec.json?.stream
        ? this.sse(req, responsesStream(rec.json.model))
        : Response.json(responsesAnswer(rec.json?.model));
    if (p.endsWith('/chat/completions')) {
      return rec.json?.stream
        ? this.sse(req, chatStream(rec.json.model, rec.json.stream_options?.include_usage !== false))
        : Response.json(chatAnswer(rec.json?.model));
    }
    if (p.endsWith('/models')) return Response.json({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model' }] });
    return Response.json({ echo: { method: rec.method, path: rec.path, query: rec.query } });
  }

  /** An SSE answer from a list of [event name | undefined, data] frames. */
  sse(req: Request, frames: Array<[string | undefined, unknown]>, gapMs = 0): Response {
    const enc = new TextEncoder();
    const self = this;
    let i = 0;
    self.openStreams++;
    let closed = false;
    const finish = () => {
      if (!closed) {
        closed = true;
        self.openStreams--;
      }
    };
    req.signal.addEventListener('abort', () => {
      if (!closed) self.abortedStreams++;
      finish();
    });
    return new Response(
      new ReadableStream({
        async pull(controller) {
          if (i >= frames.length) {
            finish();
            controller.close();
            return;
          }
          if (gapMs && i > 0) await Bun.sleep(gapMs);
          const [event, data] = frames[i++]!;
          const payload = typeof data === 'string' ? data : JSON.stringify(data);
          controller.enqueue(enc.encode(`${event ? `event: ${event}\n` : ''}data: ${payload}\n\n`));
        },
        cancel() {
          if (!closed) self.abortedStreams++;
          finish();
        },
      }),
      {
        headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': 'req_upstream_1' },
      },
    );
  }
}

const U = MOCK_USAGE;

export function chatAnswer(model = 'gpt-4o-mini') {
  return {
    id: 'chatcmpl-mock',
    object: 'chat.completion',
    created: 1,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: 'hello from mock' }, finish_reason: 'stop' }],
    usage: {
      prompt_tokens: U.input,
      completion_tokens: U.output,
      total_tokens: U.input + U.output,
      prompt_tokens_details: { cached_tokens: U.cacheRead },
    },
  };
}

export const CHAT_STREAM_TEXT = ['hel', 'lo ', 'from ', 'mock ✓ ünï'];

export function chatStream(model = 'gpt-4o-mini', includeUsage = true): Array<[string | undefined, unknown]> {
  const frames: Array<[string | undefined, unknown]> = CHAT_STREAM_TEXT.map((t, i) => [
    undefined,
    {
      id: 'chatcmpl-mock',
      object: 'chat.completion.chunk',
      created: 1,
      model,
      choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: t } : { content: t }, finish_reason: null }],
    },
  ]);
  frames.push([
    undefined,
    {
      id: 'chatcmpl-mock',
      object: 'chat.completion.chunk',
      created: 1,
      model,
      choices: [{ index: 0, delta: {}, finish_reason: 'stop' }],
    },
  ]);
  if (includeUsage) {
    frames.push([
      undefined,
      {
        id: 'chatcmpl-mock',
        object: 'chat.completion.chunk',
        created: 1,
        model,
        choices: [],
        usage: { prompt_tokens: U.input, completion_tokens: U.output, total_tokens: U.input + U.output },
      },
    ]);
  }
  frames.push([undefined, '[DONE]']);
  return frames;
}

export function responsesAnswer(model = 'gpt-4.1') {
  return {
    id: 'resp_mock',
    object: 'response',
    created_at: 1,
    status: 'completed',
    model,
    output: [
      {
        type: 'message',
        id: 'msg_1',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: 'hello from mock', annotations: [] }],
      },
    ],
    usage: {
      input_tokens: U.input,
      output_tokens: U.output,
      total_tokens: U.input + U.output,
      input_tokens_details: { cached_tokens: U.cacheRead },
      output_tokens_details: { reasoning_tokens: 0 },
    },
  };
}

export function responsesStream(model = 'gpt-4.1'): Array<[string | undefined, unknown]> {
  const base = { ...responsesAnswer(model), status: 'in_progress', output: [], usage: null };
  return [
    ['response.created', { type: 'response.created', sequence_number: 0, response: base }],
    [
      'response.output_text.delta',
      {
        type: 'response.output_text.delta',
        sequence_number: 1,
        item_id: 'msg_1',
        output_index: 0,
        content_index: 0,
        delta: 'hello from mock',
      },
    ],
    ['response.completed', { type: 'response.completed', sequence_number: 2, response: responsesAnswer(model) }],
  ];
}

export function anthropicAnswer(model = 'claude-sonnet-4-20250514') {
  return {
    id: 'msg_mock',
    type: 'message',
    role: 'assistant',
    model,
    content: [{ type: 'text', text: 'hello from mock' }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: {
      input_tokens: U.input,
      output_tokens: U.output,
      cache_read_input_tokens: U.cacheRead,
      cache_creation_input_tokens: U.cacheWrite,
    },
  };
}

export function anthropicStream(model = 'claude-sonnet-4-20250514'): Array<[string | undefined, unknown]> {
  return [
    [
      'message_start',
      {
        type: 'message_start',
        message: {
          ...anthropicAnswer(model),
          content: [],
          stop_reason: null,
          usage: {
            input_tokens: U.input,
            output_tokens: 1,
            cache_read_input_tokens: U.cacheRead,
            cache_creation_input_tokens: U.cacheWrite,
          },
        },
      },
    ],
    ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
    ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hello ' } }],
    [
      'content_block_delta',
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'from mock' } },
    ],
    ['content_block_stop', { type: 'content_block_stop', index: 0 }],
    [
      'message_delta',
      {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: U.output },
      },
    ],
    ['message_stop', { type: 'message_stop' }],
  ];
}

export function geminiAnswer() {
  return {
    candidates: [{ content: { role: 'model', parts: [{ text: 'hello from mock' }] }, finishReason: 'STOP', index: 0 }],
    usageMetadata: { promptTokenCount: U.input, candidatesTokenCount: U.output, totalTokenCount: U.input + U.output },
    modelVersion: 'gemini-2.5-flash',
  };
}

export function geminiStream(): Array<[string | undefined, unknown]> {
  return [
    [
      undefined,
      {
        candidates: [{ content: { role: 'model', parts: [{ text: 'hello ' }] }, index: 0 }],
        usageMetadata: { promptTokenCount: U.input, totalTokenCount: U.input },
        modelVersion: 'gemini-2.5-flash',
      },
    ],
    [
      undefined,
      {
        candidates: [{ content: { role: 'model', parts: [{ text: 'from mock' }] }, finishReason: 'STOP', index: 0 }],
        usageMetadata: {
          promptTokenCount: U.input,
          candidatesTokenCount: U.output,
          totalTokenCount: U.input + U.output,
        },
        modelVersion: 'gemini-2.5-flash',
      },
    ],
  ];
}

/**
 * A mock whose streamed chat answers for model `slow-N` are the 7-frame chat stream with
 * N ms between frames (streams still open when a gateway stops, in the process tests).
 */
export function slowStreamsMock(): MockUpstream {
  const mock = new MockUpstream();
  mock.respondWith((req, rec) => {
    const m = /^slow-(\d+)$/.exec(rec.json?.model ?? '');
    return rec.json?.stream && m ? mock.sse(req, chatStream(rec.json.model), Number(m[1])) : undefined;
  });
  return mock;
}
