/**
 * What a request's record says about its usage and cost: whether the usage can be billed
 * on (`usage_status`, and `usage_note` when it cannot), set where the answer's body ends
 * (relay.ts), and the cost at the model's price, set once when the record is closed
 * (completion.ts), before any completion hook reads it: the log line, metrics and
 * governance's budgets all read the same `cost_usd`.
 */
import type { RequestContext, RequestRecord } from '../core/request.ts';
import { contentCoding } from '../lib/content-coding.ts';
import { reportsUsage } from '../usage/api.ts';
import { costNanoUsd, NANO_PER_USD } from '../usage/cost.ts';
import type { Usage } from '../usage/types.ts';
import type { Context } from './prepare.ts';

export interface BodyEnd {
  status: number;
  usage: Usage | undefined;
  /** A stream that ended early (client gone, idle, cut upstream, shutdown). */
  partial: boolean;
  /** Output tokens are the estimate from the text relayed. */
  estimated: boolean;
  contentType: string | null;
  contentEncoding: string | null;
}

/** usage, usage_status, usage_note and output_tokens_estimated, once the answer's body ended. */
export function noteUsage(ctx: Context, end: BodyEnd): void {
  const r = ctx.record;
  const expected = reportsUsage(ctx.call.apiStyle);
  r.usage = end.usage;
  if (end.partial && (expected || end.usage) && end.status < 300) {
    r.usage_status = 'partial';
    if (end.estimated) r.output_tokens_estimated = true;
    if (!end.usage) r.usage_note = 'the stream ended before any usage was read';
  } else if (end.usage) r.usage_status = 'complete';
  else if (expected && end.status >= 200 && end.status < 300) {
    r.usage_status = 'absent';
    r.usage_note = absentNote(ctx, end);
  }
}

function absentNote(ctx: Context, end: BodyEnd): string {
  const ct = end.contentType?.toLowerCase() ?? '';
  if (!ct.startsWith('text/event-stream') && !ct.includes('json'))
    return `the answer's content type (${end.contentType ?? 'none'}) is neither JSON nor SSE`;
  if (contentCoding(end.contentEncoding) === 'unsupported')
    return `the answer is compressed with ${end.contentEncoding}, which the gateway cannot read`;
  if (ctx.call.apiStyle === 'chat' && ctx.record.stream) {
    const options = ctx.json?.stream_options as { include_usage?: unknown } | undefined;
    return options?.include_usage === true
      ? 'the chat stream carried no usage chunk although stream_options.include_usage was set'
      : 'the chat stream carried no usage: the request did not set stream_options.include_usage (usage.add_stream_usage: true adds it)';
  }
  return 'no usage was found in the answer';
}

/**
 * cost_usd and price_source of a record with usage, at its model's price (none: no cost,
 * never 0). A WebSocket session's record is priced report by report instead (priceReport).
 */
export function priceUsage(r: RequestRecord, ctx: RequestContext): void {
  if (!r.usage || r.cost_usd !== undefined) return;
  const price = ctx.config.providers[r.provider]?.prices.lookup(r.model);
  const rates = price?.ratesAt(Date.now());
  if (!rates) return;
  r.cost_usd = costNanoUsd(r.usage, rates) / NANO_PER_USD;
  r.price_source = price!.source;
}

/**
 * One usage report of a WebSocket session (a response or a turn, each billed on its own),
 * priced now and added to the record's cost; returns its cost in USD, undefined when unpriced.
 */
export function priceReport(ctx: Context, usage: Usage): number | undefined {
  const r = ctx.record;
  const price = ctx.config.providers[r.provider]?.prices.lookup(r.model);
  const rates = price?.ratesAt(Date.now());
  if (!rates) return undefined;
  const nano = costNanoUsd(usage, rates);
  // Summed in nano-USD, as a budget adds them, so the line and the budget agree.
  r.cost_usd = (Math.round((r.cost_usd ?? 0) * NANO_PER_USD) + nano) / NANO_PER_USD;
  r.price_source = price!.source;
  return nano / NANO_PER_USD;
}
