/**
 * OpenTelemetry tracing without the SDK: one SERVER span per passthrough request and
 * one CLIENT span per upstream attempt, with the GenAI and HTTP semantic-convention
 * attributes, exported as OTLP/HTTP JSON in batches (exporter.ts).
 *
 * Why not @opentelemetry/sdk-node: the gateway creates every span by hand anyway
 * (auto-instrumentation sees neither Bun.serve nor Bun's fetch), the request context
 * already carries per-request state (so no AsyncLocalStorage context manager is
 * needed), and W3C trace context is one header. The SDK would add ~30 packages and its
 * span machinery to every request for a JSON document we can write directly.
 *
 * Trace context: an incoming W3C `traceparent` is continued (its trace id, its span as
 * the parent, its sampled flag); otherwise a new trace is started and sampled with
 * `tracing.sample_ratio`. Each upstream attempt carries a `traceparent` naming its own
 * attempt span, sampled or not, so the provider side can join the trace.
 *
 * Hot path: no request hook (an async hook would cost every request a promise); the
 * trace starts at the first attempt (a header parse, two ids), each attempt sets one
 * header, and a sampled request queues one small item on completion. Spans are encoded
 * in batches by the exporter (otlp-json.ts, exporter.ts).
 */
import type { RuntimeConfig } from '../../config/runtime.ts';
import type { ProviderId } from '../../config/schema.ts';
import type { AttemptInfo, EndpointId, Outcome, Plugin, RequestContext, RequestRecord } from '../../pipeline/types.ts';
import { VERSION } from '../../version.ts';
import { OtlpExporter } from './exporter.ts';
import { fragment, type JsonWriter } from './json-writer.ts';
import { beginSpan, boolAttr, endSpan, exportEnvelope, intAttr, leadingAttrs, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET, stringAttr } from './otlp-json.ts';
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent } from './trace-context.ts';

/** gen_ai.system (older conventions) and gen_ai.provider.name (current ones). */
const GENAI: Record<ProviderId, { system: string; provider: string }> = {
  openai: { system: 'openai', provider: 'openai' },
  anthropic: { system: 'anthropic', provider: 'anthropic' },
  azure: { system: 'az.ai.openai', provider: 'azure.ai.openai' },
  gemini: { system: 'gcp.gemini', provider: 'gcp.gemini' },
  vertex: { system: 'gcp.vertex_ai', provider: 'gcp.vertex_ai' },
};

const ROUTES: Record<EndpointId, string> = {
  openai: '/openai_passthrough',
  anthropic: '/anthropic_passthrough',
  azure: '/azure_passthrough',
  genai: '/genai_passthrough',
};

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

/** What is fixed by provider and endpoint, encoded once per pair. */
interface Fixed {
  route: string;
  /** Server span name ("POST /openai_passthrough/*") per common method, as JSON bytes. */
  names: Record<string, Uint8Array>;
  server: Uint8Array;
  attempt: Uint8Array;
}
const FIXED = new Map<string, Fixed>();
for (const provider of Object.keys(GENAI) as ProviderId[]) {
  for (const endpoint of Object.keys(ROUTES) as EndpointId[]) {
    const genai = { 'gen_ai.system': GENAI[provider].system, 'gen_ai.provider.name': GENAI[provider].provider };
    const route = `${ROUTES[endpoint]}/*`;
    FIXED.set(`${provider}|${endpoint}`, {
      route,
      names: Object.fromEntries(METHODS.map((m) => [m, fragment(JSON.stringify(`${m} ${route}`))])),
      server: leadingAttrs({ 'http.route': route, ...genai, 'skybridge.endpoint': endpoint }),
      attempt: leadingAttrs(genai),
    });
  }
}

const attr = {
  method: stringAttr('http.request.method'),
  urlPath: stringAttr('url.path'),
  urlFull: stringAttr('url.full'),
  serverAddress: stringAttr('server.address'),
  serverPort: intAttr('server.port'),
  status: intAttr('http.response.status_code'),
  resendCount: intAttr('http.request.resend_count'),
  clientAddress: stringAttr('client.address'),
  operation: stringAttr('gen_ai.operation.name'),
  model: stringAttr('gen_ai.request.model'),
  inputTokens: intAttr('gen_ai.usage.input_tokens'),
  outputTokens: intAttr('gen_ai.usage.output_tokens'),
  errorType: stringAttr('error.type'),
  requestId: stringAttr('skybridge.request_id'),
  key: stringAttr('skybridge.key'),
  virtualKey: stringAttr('skybridge.virtual_key'),
  outcome: stringAttr('skybridge.outcome'),
  attempts: intAttr('skybridge.attempts'),
  attempt: intAttr('skybridge.attempt'),
  stream: boolAttr('skybridge.stream'),
  cacheRead: intAttr('skybridge.usage.cache_read_input_tokens'),
  cacheCreation: intAttr('skybridge.usage.cache_creation_input_tokens'),
};

const FAILED_OUTCOMES: ReadonlySet<Outcome> = new Set<Outcome>(['upstream_error', 'stream_idle_timeout', 'gateway_error']);

/** gen_ai.operation.name from the provider-native path, where it is recognisable. */
export function operationOf(path: string): string | undefined {
  if (path.endsWith('/chat/completions') || path.endsWith('/messages') || path.endsWith('/responses')) return 'chat';
  if (path.endsWith('/completions')) return 'text_completion';
  if (path.endsWith('/embeddings') || path.includes(':embedContent') || path.includes(':batchEmbedContents')) return 'embeddings';
  if (path.includes(':generateContent') || path.includes(':streamGenerateContent')) return 'generate_content';
  return undefined;
}

interface AttemptSpan {
  spanId: string;
  attempt: number;
  startedAt: number;
  info?: AttemptInfo;
}

/** Per-request trace state (ctx.state.tracing). */
interface RequestTrace {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  sampled: boolean;
  attempts: AttemptSpan[];
}

/** A sampled request waiting for the next export. */
interface FinishedRequest {
  record: RequestRecord;
  trace: RequestTrace;
  /** performance.now() ms. */
  startPerf: number;
  endPerf: number;
}

const epochMs = (perfMs: number): number => performance.timeOrigin + perfMs;

export class TracingPlugin implements Plugin {
  readonly name = 'tracing';
  /** Off (no tracing.endpoint): the plugin stays out of the pipeline. */
  inPipeline = false;
  exporter: OtlpExporter<FinishedRequest> | undefined;
  private sampleRatio = 1;
  private exporterKey = '';

  async configure(config: RuntimeConfig): Promise<void> {
    const t = config.source.tracing;
    this.sampleRatio = t.sample_ratio;
    this.inPipeline = Boolean(t.endpoint);
    const key = t.endpoint ? JSON.stringify([t.endpoint, t.headers, t.service_name]) : '';
    if (key === this.exporterKey) return;
    const old = this.exporter;
    this.exporterKey = key;
    this.exporter = t.endpoint
      ? new OtlpExporter(
          t.endpoint,
          t.headers,
          exportEnvelope(
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

  async disable(): Promise<void> {
    this.inPipeline = false;
  }

  onAttemptStart(ctx: RequestContext, attempt: number): void {
    const t = this.traceOf(ctx);
    const spanId = newSpanId();
    t.attempts.push({ spanId, attempt, startedAt: performance.now() });
    ctx.headers.set('traceparent', formatTraceparent(t.traceId, spanId, t.sampled));
  }

  onAttemptEnd(ctx: RequestContext, info: AttemptInfo): void {
    const t = ctx.state.tracing as RequestTrace | undefined;
    const span = t?.attempts.at(-1);
    if (span && !span.info) span.info = info;
  }

  onComplete(record: RequestRecord, ctx: RequestContext | undefined): void {
    const exporter = this.exporter;
    if (!exporter) return;
    let t: RequestTrace;
    let endPerf: number;
    let startPerf: number;
    if (ctx) {
      t = this.traceOf(ctx);
      startPerf = ctx.startedAt;
      endPerf = ctx.startedAt + record.latency_ms;
    } else {
      // Refused before a context existed (bad path, body too large): a root span.
      t = this.newTrace(null);
      endPerf = performance.now();
      startPerf = endPerf - record.latency_ms;
    }
    if (!t.sampled) return;

    exporter.add({ record, trace: t, startPerf, endPerf });
  }

  async flush(): Promise<void> {
    await this.exporter?.flush();
  }

  async close(): Promise<void> {
    await this.flush();
  }

  private traceOf(ctx: RequestContext): RequestTrace {
    let t = ctx.state.tracing as RequestTrace | undefined;
    if (!t) ctx.state.tracing = t = this.newTrace(ctx.request.headers.get('traceparent'));
    return t;
  }

  private newTrace(traceparent: string | null): RequestTrace {
    const parent = parseTraceparent(traceparent);
    if (parent) return { traceId: parent.traceId, spanId: newSpanId(), parentSpanId: parent.spanId, sampled: parent.sampled, attempts: [] };
    const ratio = this.sampleRatio;
    return { traceId: newTraceId(), spanId: newSpanId(), parentSpanId: undefined, sampled: ratio >= 1 || (ratio > 0 && Math.random() < ratio), attempts: [] };
  }
}

/** The server span and one span per attempt, comma-separated; returns how many. */
function writeSpans(w: JsonWriter, { record, trace: t, startPerf, endPerf }: FinishedRequest): number {
  const fixed = FIXED.get(`${record.provider}|${record.endpoint}`)!;
  const usage = record.usage;
  const operation = operationOf(record.path);
  const failed = record.status >= 500 || FAILED_OUTCOMES.has(record.outcome);

  beginSpan(w, t.traceId, t.spanId, t.parentSpanId, fixed.names[record.method] ?? `${record.method} ${fixed.route}`, SPAN_KIND_SERVER, epochMs(startPerf), epochMs(endPerf), fixed.server);
  attr.method(w, record.method);
  attr.urlPath(w, ROUTES[record.endpoint] + record.path);
  attr.status(w, record.status || undefined);
  attr.clientAddress(w, record.client_ip);
  attr.operation(w, operation);
  attr.model(w, record.model);
  attr.inputTokens(w, usage?.input_tokens);
  attr.outputTokens(w, usage?.output_tokens);
  attr.errorType(w, record.error?.type ?? (record.status >= 500 ? String(record.status) : undefined));
  attr.requestId(w, record.request_id);
  attr.key(w, record.key);
  attr.virtualKey(w, record.virtual_key);
  attr.outcome(w, record.outcome);
  attr.attempts(w, record.attempts);
  attr.stream(w, record.stream);
  attr.cacheRead(w, usage?.cache_read_input_tokens);
  attr.cacheCreation(w, usage?.cache_creation_input_tokens);
  endSpan(w, failed ? STATUS_ERROR : STATUS_UNSET, failed ? record.error?.message : undefined);

  const attemptName = operation ? `${operation} ${record.model ?? ''}`.trimEnd() : `${record.method} upstream`;
  const last = t.attempts.at(-1);
  for (const a of t.attempts) {
    const info = a.info;
    const isFinal = a === last;
    // The attempt whose answer was relayed lasts until the relay ended; one that
    // never reported back (client gone mid-fetch) ends with the request.
    const end = !info ? endPerf : isFinal && info.status !== undefined ? Math.max(info.endedAt, endPerf) : info.endedAt;
    const status = info?.status;
    const attemptError = info ? (info.error ?? (status !== undefined && status >= 400 ? String(status) : isFinal && FAILED_OUTCOMES.has(record.outcome) ? record.error?.type : undefined)) : 'client_aborted';
    w.raw(COMMA);
    beginSpan(w, t.traceId, a.spanId, t.spanId, attemptName, SPAN_KIND_CLIENT, epochMs(info?.startedAt ?? a.startedAt), epochMs(end), fixed.attempt);
    attr.method(w, record.method);
    if (info) writeTarget(w, info.url);
    attr.status(w, status);
    attr.resendCount(w, a.attempt > 1 ? a.attempt - 1 : undefined);
    attr.operation(w, operation);
    attr.model(w, record.model);
    if (isFinal) {
      attr.inputTokens(w, usage?.input_tokens);
      attr.outputTokens(w, usage?.output_tokens);
    }
    attr.errorType(w, attemptError);
    attr.requestId(w, record.request_id);
    attr.attempt(w, a.attempt);
    attr.key(w, info?.key ?? record.key);
    endSpan(w, attemptError ? STATUS_ERROR : STATUS_UNSET);
  }
  return 1 + t.attempts.length;
}

const COMMA = fragment(',');

// ---------------------------------------------------------------------------------
// Upstream URL → url.full (no query: it may carry credentials), server.address/port

/** scheme, userinfo (dropped), host (or [v6]), port of an absolute URL's origin. */
const ORIGIN = /^([a-z][a-z0-9+.-]*):\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)(?::(\d+))?$/i;

interface Origin {
  /** scheme://host[:port], no userinfo. */
  origin: string;
  address: string;
  port: number;
}

/** Upstream origins repeat (a handful per config; Vertex adds one per region), so each is parsed once. */
const origins = new Map<string, Origin | null>();
const MAX_ORIGINS = 256;

/** url.full (no query or fragment: they may carry credentials), server.address, server.port. */
function writeTarget(w: JsonWriter, url: string): void {
  const pathAt = url.indexOf('/', url.indexOf('//') + 2);
  const originText = pathAt < 0 ? url : url.slice(0, pathAt);
  let o = origins.get(originText);
  if (o === undefined) {
    o = parseOrigin(originText);
    if (origins.size >= MAX_ORIGINS) origins.clear();
    origins.set(originText, o);
  }
  if (!o) return;
  let end = url.length;
  for (const stop of ['?', '#']) {
    const at = pathAt < 0 ? -1 : url.indexOf(stop, pathAt);
    if (at >= 0 && at < end) end = at;
  }
  attr.urlFull(w, pathAt < 0 ? o.origin : o.origin + url.slice(pathAt, end));
  attr.serverAddress(w, o.address);
  attr.serverPort(w, o.port);
}

function parseOrigin(text: string): Origin | null {
  const m = ORIGIN.exec(text);
  if (!m) return null;
  const [, scheme, host, port] = m as unknown as [string, string, string, string | undefined];
  return {
    origin: `${scheme}://${host}${port ? `:${port}` : ''}`,
    address: host.startsWith('[') ? host.slice(1, -1) : host,
    port: port ? Number(port) : scheme.toLowerCase() === 'https' ? 443 : 80,
  };
}
