/**
 * One passthrough request, top to bottom: each step is a named function in its own file
 * of proxy/, and every way the request ends goes through its Completion.
 */
import type { GatewayState } from '../core/runtime.ts';
import type { Route } from '../providers/routes.ts';
import { readBody } from './body.ts';
import { Completion } from './completion.ts';
import { exchange } from './exchange.ts';
import { continuedUpload, prepare } from './prepare.ts';
import { openSession } from './realtime.ts';
import { startRecord } from './record.ts';
import { relay } from './relay.ts';
import { rewriteAnswer } from './rewrite.ts';
import { type RawTarget, readTarget } from './target.ts';

export async function handle(
  route: Route,
  request: Request,
  server: Bun.Server<unknown> | null,
  rt: GatewayState,
  raw: RawTarget,
): Promise<Response | undefined> {
  const { config, pipeline } = rt; // read once: a reload swaps both
  const done = new Completion(startRecord(route, request, server), pipeline, rt); // completion.ts: closes the record once
  const record = done.record;

  const target = readTarget(route, request, raw); // target.ts: prefix, path safety, method
  if (!target.ok) return done.refused(target.refusal);
  record.path = target.path;
  // realtime.ts: a WebSocket session (undefined once upgraded), or its refusal.
  if (target.upgrade) {
    const { path, query } = target;
    return openSession({ route, request, server, rt, config, pipeline, path, query, done });
  }

  // A resumable upload's chunk (providers/: Gemini's upload_id): its file bytes stream through, never held.
  const uploadId = continuedUpload(route, target.query, config);
  const body = await readBody(request, config, record, uploadId ? 'stream' : 'hold'); // body.ts: none | held | streamed | refused
  if (body.kind === 'refused') return done.refused(body.refusal);
  // The body is in: lift the connection's idle timeout, or a silent generation the client waits for is cut.
  server?.timeout(request, 0);

  // prepare.ts, asking providers/: provider, model, stream, key mode, upstream headers and query.
  const ctx = done.begin(
    prepare({ route, request, target, body, config, record, startedAt: done.startedAt, uploadId }),
  );
  try {
    if (pipeline.hasRequestHooks) {
      const refused = done.admit(await pipeline.onRequest(ctx)); // governance: a virtual key, or a refusal
      if (refused) return refused;
    }
    if (ctx.call.noKey) return done.refused(ctx.call.noKey); // after the hooks, so a virtual key is checked first
    const answer = await exchange(ctx, ctx.body, pipeline); // exchange.ts: keys, auth, attempts, retries
    if (answer.kind !== 'response') return done.settle(answer); // failed | aborted | body over the limit
    pipeline.onResponse(ctx, answer.response);
    const rewritten = rewriteAnswer(ctx, answer); // rewrite.ts: provider URLs pointed at the gateway (rarely any)
    return relay(ctx, rewritten ? await rewritten : answer.response, done); // relay.ts: whole or piped, usage, idle limit
  } catch (err) {
    return done.fault(err); // a GatewayError answers as itself; anything else is a 500
  }
}
