/**
 * What the spans of a request say: a SERVER span for the passthrough request and a
 * CLIENT span per upstream attempt, with the GenAI and HTTP semantic-convention
 * attributes (https://opentelemetry.io/docs/specs/semconv/gen-ai/) and skybridge.* ones.
 * Attribute writers and everything fixed per provider and endpoint are built once per
 * wire encoding, at module load.
 */
import type { AttemptInfo, Outcome, RequestRecord } from '../../core/request.ts';
import { customPrefix, GENERIC_PREFIX, ROUTES } from '../../providers/routes.ts';
import type { ByteWriter } from './byte-writer.ts';
import { type OtlpEncoding, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET } from './encoding.ts';
import { newSpanId } from './trace-context.ts';

export interface AttemptSpan {
  spanId: string;
  attempt: number;
  startedAt: number;
  info?: AttemptInfo;
}

/** Per-request trace state (a Slot on the context). */
export interface RequestTrace {
  traceId: string;
  /** The caller's span, when a `traceparent` came in. */
  parentSpanId: string | undefined;
  sampled: boolean;
  /** Sampled traces only. */
  attempts: AttemptSpan[];
}

/** gen_ai.system (older conventions) and gen_ai.provider.name (current ones), from the provider. */
export interface GenAiNames {
  readonly system: string;
  readonly provider: string;
}

/** A sampled request waiting for the next export. */
export interface FinishedRequest {
  record: Readonly<RequestRecord>;
  genai: GenAiNames;
  trace: RequestTrace;
  /** performance.now() ms. */
  startPerf: number;
  endPerf: number;
}

const PREFIXES: Readonly<Record<string, string>> = Object.fromEntries(ROUTES.map((r) => [r.id, r.prefix]));

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

/** What is fixed by provider and endpoint, encoded once per pair (on first use). */
interface Fixed {
  route: string;
  /** Server span name ("POST /openai_passthrough/*") per common method, encoded. */
  names: Record<string, Uint8Array>;
  server: Uint8Array;
  attempt: Uint8Array;
}

function schemaFor(enc: OtlpEncoding) {
  const fixedByPair = new Map<string, Fixed>();
  const fixed = (genai: GenAiNames, endpoint: string): Fixed => {
    const pair = `${genai.provider}\u0000${endpoint}`;
    let f = fixedByPair.get(pair);
    if (!f) {
      const names = { 'gen_ai.system': genai.system, 'gen_ai.provider.name': genai.provider };
      // A route not built in is the generic router's or a provider's own (`/<name>_passthrough`).
      const prefix = PREFIXES[endpoint] ?? (endpoint === 'passthrough' ? GENERIC_PREFIX : customPrefix(endpoint));
      const route = `${prefix}/*`;
      f = {
        route,
        names: Object.fromEntries(METHODS.map((m) => [m, enc.fixedName(`${m} ${route}`)])),
        server: enc.fixedAttrs({ 'http.route': route, ...names, 'skybridge.endpoint': endpoint }),
        attempt: enc.fixedAttrs(names),
      };
      fixedByPair.set(pair, f);
    }
    return f;
  };
  const attr = {
    method: enc.stringAttr('http.request.method'),
    urlPath: enc.stringAttr('url.path'),
    urlFull: enc.stringAttr('url.full'),
    serverAddress: enc.stringAttr('server.address'),
    serverPort: enc.intAttr('server.port'),
    status: enc.intAttr('http.response.status_code'),
    resendCount: enc.intAttr('http.request.resend_count'),
    clientAddress: enc.stringAttr('client.address'),
    operation: enc.stringAttr('gen_ai.operation.name'),
    model: enc.stringAttr('gen_ai.request.model'),
    inputTokens: enc.intAttr('gen_ai.usage.input_tokens'),
    outputTokens: enc.intAttr('gen_ai.usage.output_tokens'),
    errorType: enc.stringAttr('error.type'),
    requestId: enc.stringAttr('skybridge.request_id'),
    key: enc.stringAttr('skybridge.key'),
    virtualKey: enc.stringAttr('skybridge.virtual_key'),
    outcome: enc.stringAttr('skybridge.outcome'),
    attempts: enc.intAttr('skybridge.attempts'),
    attempt: enc.intAttr('skybridge.attempt'),
    stream: enc.boolAttr('skybridge.stream'),
    cacheRead: enc.intAttr('skybridge.usage.cache_read_input_tokens'),
    cacheCreation: enc.intAttr('skybridge.usage.cache_creation_input_tokens'),
  };
  return { enc, fixed, attr };
}

type SpanSchema = ReturnType<typeof schemaFor>;

const FAILED_OUTCOMES: ReadonlySet<Outcome> = new Set<Outcome>([
  'upstream_error',
  'stream_idle_timeout',
  'gateway_error',
]);

/** gen_ai.operation.name from the provider-native path, where it is recognisable. */
export function operationOf(path: string): string | undefined {
  if (path.endsWith('/chat/completions') || path.endsWith('/messages') || path.endsWith('/responses')) return 'chat';
  if (path.endsWith('/completions')) return 'text_completion';
  if (path.endsWith('/embeddings') || path.includes(':embedContent') || path.includes(':batchEmbedContents'))
    return 'embeddings';
  if (path.includes(':generateContent') || path.includes(':streamGenerateContent')) return 'generate_content';
  return undefined;
}

const epochMs = (perfMs: number): number => performance.timeOrigin + perfMs;

/** The span writer for an encoding: `(w, request) => spans written`. */
export function spanWriter(enc: OtlpEncoding): (w: ByteWriter, item: FinishedRequest) => number {
  const schema = schemaFor(enc);
  return (w, item) => writeSpans(schema, w, item);
}

/** The server span and one span per attempt; returns how many. */
function writeSpans(
  { enc, fixed: fixedFor, attr }: SpanSchema,
  w: ByteWriter,
  { record, genai, trace: t, startPerf, endPerf }: FinishedRequest,
): number {
  const fixed = fixedFor(genai, record.endpoint);
  const usage = record.usage;
  const operation = operationOf(record.path);
  const failed = record.status >= 500 || FAILED_OUTCOMES.has(record.outcome);

  const serverSpanId = newSpanId();
  enc.beginSpan(
    w,
    t.traceId,
    serverSpanId,
    t.parentSpanId,
    fixed.names[record.method] ?? `${record.method} ${fixed.route}`,
    SPAN_KIND_SERVER,
    epochMs(startPerf),
    epochMs(endPerf),
    fixed.server,
  );
  attr.method(w, record.method);
  attr.urlPath(w, (PREFIXES[record.endpoint] ?? '') + record.path);
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
  enc.endSpan(w, failed ? STATUS_ERROR : STATUS_UNSET, failed ? record.error?.message : undefined);

  const attemptName = operation ? `${operation} ${record.model ?? ''}`.trimEnd() : `${record.method} upstream`;
  const last = t.attempts.at(-1);
  for (const a of t.attempts) {
    const info = a.info;
    const isFinal = a === last;
    // The attempt whose answer was relayed lasts until the relay ended; one that
    // never reported back (client gone mid-fetch) ends with the request.
    const end = !info ? endPerf : isFinal && info.status !== undefined ? Math.max(info.endedAt, endPerf) : info.endedAt;
    const status = info?.status;
    const attemptError = info
      ? (info.error ??
        (status !== undefined && status >= 400
          ? String(status)
          : isFinal && FAILED_OUTCOMES.has(record.outcome)
            ? record.error?.type
            : undefined))
      : 'client_aborted';
    w.raw(enc.separator);
    enc.beginSpan(
      w,
      t.traceId,
      a.spanId,
      serverSpanId,
      attemptName,
      SPAN_KIND_CLIENT,
      epochMs(info?.startedAt ?? a.startedAt),
      epochMs(end),
      fixed.attempt,
    );
    attr.method(w, record.method);
    if (info) writeTarget(attr, w, info.url);
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
    enc.endSpan(w, attemptError ? STATUS_ERROR : STATUS_UNSET);
  }
  return 1 + t.attempts.length;
}

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
function writeTarget(attr: SpanSchema['attr'], w: ByteWriter, url: string): void {
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
  const query = pathAt < 0 ? -1 : url.indexOf('?', pathAt);
  const fragment = pathAt < 0 ? -1 : url.indexOf('#', pathAt);
  if (query >= 0) end = query;
  if (fragment >= 0 && fragment < end) end = fragment;
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
