/**
 * Anthropic's Message Batches routes as a MockUpstream answers them: create (every
 * request succeeds at once), retrieve, list, cancel, and the results as JSONL. Every
 * batch object carries `results_url`, absolute on the upstream's own origin, as
 * Anthropic's does (the SDKs GET it as given).
 */
import { gzipSync } from 'node:zlib';
import type { MockUpstream, Recorded } from './mock-upstream.ts';

interface Batch {
  id: string;
  type: 'message_batch';
  processing_status: 'in_progress' | 'ended' | 'canceling';
  request_counts: Record<string, number>;
  results_url: string | null;
  created_at: string;
  ended_at: string | null;
  expires_at: string;
  archived_at: null;
  cancel_initiated_at: string | null;
}

/** Anthropic's batch routes as the mock answers them; `body` lets a test choose the exact bytes. */
export class AnthropicBatches {
  readonly batches = new Map<string, Batch>();
  readonly results = new Map<string, string>();
  /** Bytes for an answer instead of JSON.stringify (exact-byte tests); gzip'd when `gzip`. */
  override: ((path: string) => { text: string; gzip?: boolean; chunked?: boolean } | undefined) | undefined;
  private n = 0;

  constructor(
    mock: MockUpstream,
    private readonly origin = mock.url,
  ) {
    mock.respondWith((req, rec) => this.answer(req, rec));
  }

  private answer(_req: Request, rec: Recorded): Response | undefined {
    if (!rec.path.startsWith('/v1/messages/batches')) return undefined;
    const custom = this.override?.(rec.path);
    if (custom) {
      const bytes = custom.gzip ? gzipSync(custom.text) : new TextEncoder().encode(custom.text);
      const headers: Record<string, string> = { 'content-type': 'application/json', 'request-id': 'req_batch' };
      if (custom.gzip) headers['content-encoding'] = 'gzip';
      const body = custom.chunked
        ? new ReadableStream({
            start(c) {
              c.enqueue(bytes.subarray(0, 7));
              c.enqueue(bytes.subarray(7));
              c.close();
            },
          })
        : bytes;
      return new Response(body, { headers });
    }
    const m = /^\/v1\/messages\/batches(?:\/([^/]+)(?:\/(cancel|results))?)?$/.exec(rec.path);
    if (!m) return undefined;
    const [, id, action] = m;
    if (!id && rec.method === 'POST') {
      const batch = this.create(rec.json.requests);
      return Response.json(batch);
    }
    if (!id)
      return Response.json({
        data: [...this.batches.values()].reverse(),
        has_more: false,
        first_id: null,
        last_id: null,
      });
    const batch = this.batches.get(id!);
    if (!batch) return Response.json({ type: 'error', error: { type: 'not_found_error' } }, { status: 404 });
    if (action === 'cancel') return Response.json({ ...batch, processing_status: 'canceling' });
    if (action === 'results')
      return new Response(this.results.get(id!), { headers: { 'content-type': 'application/binary' } });
    return Response.json(batch);
  }

  private create(requests: Array<{ custom_id: string }>): Batch {
    const id = `msgbatch_${(++this.n).toString().padStart(4, '0')}`;
    const lines = requests.map((r, i) =>
      JSON.stringify({
        custom_id: r.custom_id,
        result: {
          type: 'succeeded',
          message: {
            id: `msg_${i}`,
            type: 'message',
            role: 'assistant',
            content: [{ type: 'text', text: `réponse ✓ ${i}` }],
          },
        },
      }),
    );
    this.results.set(id, `${lines.join('\n')}\n`);
    const batch: Batch = {
      id,
      type: 'message_batch',
      processing_status: 'ended',
      request_counts: { processing: 0, succeeded: requests.length, errored: 0, canceled: 0, expired: 0 },
      results_url: `${this.origin}/v1/messages/batches/${id}/results`,
      created_at: '2031-01-15T12:00:00Z',
      ended_at: '2031-01-15T12:01:00Z',
      expires_at: '2031-01-16T12:00:00Z',
      archived_at: null,
      cancel_initiated_at: null,
    };
    this.batches.set(id, batch);
    return batch;
  }
}
