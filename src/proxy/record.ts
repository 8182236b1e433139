/** A request's record, started on arrival; the phases fill it in and completion.ts closes it. */
import type { RequestRecord } from '../core/request.ts';
import { isoNow } from '../lib/time.ts';
import type { Route } from '../providers/routes.ts';

export function startRecord(route: Route, request: Request, server: Bun.Server<unknown> | null): RequestRecord {
  return {
    time: isoNow(),
    request_id: Bun.randomUUIDv7(),
    endpoint: route.id,
    provider: route.provider,
    method: request.method,
    path: '',
    status: 0,
    stream: false,
    model: undefined,
    key: undefined,
    attempts: 0,
    latency_ms: 0,
    ttfb_ms: undefined,
    bytes_in: 0,
    bytes_out: 0,
    usage: undefined,
    usage_status: 'not_applicable',
    usage_note: undefined,
    output_tokens_estimated: undefined,
    cost_usd: undefined,
    price_source: undefined,
    end_reason: undefined,
    gw_us: undefined,
    error: undefined,
    virtual_key: undefined,
    client_ip: server?.requestIP(request)?.address,
    outcome: 'ok',
    upstream_request_id: undefined,
    retries: [],
  };
}
