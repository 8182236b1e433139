/**
 * OpenTelemetry tracing without the SDK: one SERVER span per passthrough request and
 * one CLIENT span per upstream attempt (spans.ts), exported over OTLP/HTTP, protobuf or
 * JSON, in batches (exporter.ts).
 *
 * Why not @opentelemetry/sdk-node: the gateway creates every span by hand anyway
 * (auto-instrumentation sees neither Bun.serve nor Bun's fetch), the request context
 * already carries per-request state (so no AsyncLocalStorage context manager is
 * needed), and W3C trace context is one header. The SDK would add ~30 packages and its
 * span machinery to every request for a document we can write directly.
 *
 * Trace context: an incoming W3C `traceparent` is continued (its trace id, its span as
 * the parent, its sampled flag); otherwise a new trace is started and sampled with
 * `tracing.sample_ratio`. Each upstream attempt carries a `traceparent` naming its own
 * attempt span, sampled or not, so the provider side can join the trace.
 *
 * Hot path: no request hook (an async hook would cost every request a promise); the
 * trace starts at the first attempt (a header lookup; a new sampled trace takes its ids
 * and `traceparent` in one piece from a pool), each attempt sets one header, and a
 * sampled request queues one small item on completion. The server span's own id is
 * only needed in the export, so it is minted there. Spans are encoded
 * in batches, straight into bytes (otlp-proto.ts, otlp-json.ts).
 */
import type { RuntimeConfig } from '../../config/runtime.ts';
import type { Hooks, Plugin } from '../../core/plugin.ts';
import { type AttemptInfo, type RequestContext, type RequestRecord, Slot } from '../../core/request.ts';
import { VERSION } from '../../lib/version.ts';
import { PROVIDERS } from '../../providers/index.ts';
import type { OtlpEncoding } from './encoding.ts';
import { OtlpExporter } from './exporter.ts';
import { OTLP_JSON } from './otlp-json.ts';
import { OTLP_PROTO } from './otlp-proto.ts';
import { type FinishedRequest, type GenAiNames, type RequestTrace, spanWriter } from './spans.ts';
import {
  formatTraceparent,
  newSampledTraceparent,
  newSpanId,
  newTraceId,
  parseTraceparent,
  spanIdOf,
  type TraceParent,
  traceIdOf,
} from './trace-context.ts';

const ENCODINGS: Record<
  OtlpEncoding['protocol'],
  { encoding: OtlpEncoding; writeSpans: ReturnType<typeof spanWriter> }
> = {
  'http/protobuf': { encoding: OTLP_PROTO, writeSpans: spanWriter(OTLP_PROTO) },
  'http/json': { encoding: OTLP_JSON, writeSpans: spanWriter(OTLP_JSON) },
};

const TRACE = new Slot<RequestTrace>();
const UNKNOWN_PROVIDER: GenAiNames = { system: '_OTHER', provider: '_OTHER' };

export class TracingPlugin implements Plugin, Hooks {
  readonly name = 'tracing';
  exporter: OtlpExporter<FinishedRequest> | undefined;
  private sampleRatio = 1;
  private exporterKey = '';

  /** Off without tracing.endpoint. */
  configure(config: RuntimeConfig): this | undefined {
    const t = config.source.tracing;
    this.sampleRatio = t.sample_ratio;
    this.setExporter(config);
    return t.endpoint ? this : undefined;
  }

  private setExporter(config: RuntimeConfig): void {
    const t = config.source.tracing;
    const key = t.endpoint ? JSON.stringify([t.endpoint, t.headers, t.service_name, t.protocol]) : '';
    if (key === this.exporterKey) return;
    const old = this.exporter;
    this.exporterKey = key;
    const { encoding, writeSpans } = ENCODINGS[t.protocol];
    this.exporter = t.endpoint
      ? new OtlpExporter(
          t.endpoint,
          t.headers,
          encoding,
          encoding.envelope(
            {
              'service.name': t.service_name,
              'service.version': VERSION,
              'telemetry.sdk.name': 'skybridge',
              'telemetry.sdk.language': 'nodejs',
              'process.runtime.name': 'bun',
              'process.runtime.version': Bun.version,
            },
            'skybridge',
            VERSION,
          ),
          writeSpans,
        )
      : undefined;
    // Spans of the old config still go where they were meant to go.
    if (old) void old.flush();
  }

  onAttemptStart(ctx: RequestContext, attempt: number): void {
    let t = TRACE.get(ctx);
    let traceparent: string;
    let spanId: string;
    if (!t) {
      const parent = callerTrace(ctx);
      if (!parent && this.sampleRatio >= 1) {
        // The usual first attempt: ids and header in one piece from the pool.
        traceparent = newSampledTraceparent();
        spanId = spanIdOf(traceparent);
        t = { traceId: traceIdOf(traceparent), parentSpanId: undefined, sampled: true, attempts: [] };
      } else {
        t = this.newTrace(parent);
        spanId = newSpanId();
        traceparent = formatTraceparent(t.traceId, spanId, t.sampled);
      }
      TRACE.set(ctx, t);
    } else {
      spanId = newSpanId();
      traceparent = formatTraceparent(t.traceId, spanId, t.sampled);
    }
    // An unsampled trace is only propagated: nothing to keep for a span.
    if (t.sampled) t.attempts.push({ spanId, attempt, startedAt: performance.now() });
    ctx.upstream.headers.set('traceparent', traceparent);
  }

  onAttemptEnd(ctx: RequestContext, info: AttemptInfo): void {
    const span = TRACE.get(ctx)?.attempts.at(-1);
    if (span && !span.info) span.info = info;
  }

  onComplete(record: Readonly<RequestRecord>, ctx: RequestContext | undefined): void {
    const exporter = this.exporter;
    if (!exporter) return;
    let t: RequestTrace;
    let endPerf: number;
    let startPerf: number;
    if (ctx) {
      // No attempt (refused by a plugin or for want of a key): the trace starts here.
      t = TRACE.get(ctx) ?? this.newTrace(callerTrace(ctx));
      startPerf = ctx.startedAt;
      endPerf = ctx.startedAt + record.latency_ms;
    } else {
      // Refused before a context existed (bad path, body too large): a root span.
      t = this.newTrace(undefined);
      endPerf = performance.now();
      startPerf = endPerf - record.latency_ms;
    }
    if (!t.sampled) return;

    const api = ctx?.config.providers[record.provider]?.api ?? record.provider;
    exporter.add({ record, genai: PROVIDERS[api]?.genai ?? UNKNOWN_PROVIDER, trace: t, startPerf, endPerf });
  }

  async flush(): Promise<void> {
    await this.exporter?.flush();
  }

  async close(): Promise<void> {
    await this.flush();
  }

  private newTrace(parent: TraceParent | undefined): RequestTrace {
    if (parent) return { traceId: parent.traceId, parentSpanId: parent.spanId, sampled: parent.sampled, attempts: [] };
    const ratio = this.sampleRatio;
    return {
      traceId: newTraceId(),
      parentSpanId: undefined,
      sampled: ratio >= 1 || (ratio > 0 && Math.random() < ratio),
      attempts: [],
    };
  }
}

/** The caller's trace context, when it sent a valid `traceparent`. */
const callerTrace = (ctx: RequestContext): TraceParent | undefined =>
  parseTraceparent(ctx.request.headers.get('traceparent'));
