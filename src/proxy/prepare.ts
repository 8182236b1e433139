/**
 * What the request is, asked of providers/ once: which provider serves it (the route's,
 * or the one the request names), its model and whether it streams, whether the gateway's
 * keys are used (and so every client credential dropped), and the headers and query to
 * send upstream. The result is the request's context.
 */
import type { CompiledProvider, RuntimeConfig } from '../config/runtime.ts';
import { GatewayError } from '../core/errors.ts';
import type { RequestContext, RequestRecord, RootMembers, UpstreamRequest } from '../core/request.ts';
import { paramValues, withoutParams } from '../lib/query.ts';
import { CREDENTIAL_PARAMS } from '../providers/credentials.ts';
import { PROVIDERS, type Provider } from '../providers/index.ts';
import type { Route } from '../providers/routes.ts';
import { type ApiStyle, apiStyleOf } from '../usage/api.ts';
import type { UsageFormat } from '../usage/types.ts';
import type { RequestBody } from './body.ts';
import { forwardRequestHeaders } from './headers.ts';
import { withStreamUsage } from './stream-usage.ts';

/** What the proxy itself needs about the upstream call, beside the context plugins see. */
export interface Call {
  readonly provider: Provider;
  readonly settings: CompiledProvider;
  /** The gateway's keys are used (else the client's own credential is forwarded, or the request refused). */
  readonly keyed: boolean;
  /** Why the request cannot be served without keys: refused after the request hooks. */
  readonly noKey: GatewayError | undefined;
  readonly usageFormat: UsageFormat;
  /** The API within that format (chat, responses, messages, generate...): its usage and stream terminator. */
  readonly apiStyle: ApiStyle;
  /** The route it came in on: its prefix starts the gateway URLs that replace provider ones (rewrite.ts). */
  readonly route: Route;
}

export interface PrepareOptions {
  route: Route;
  request: Request;
  /** The provider-native path and the client's query. */
  target: { readonly path: string; readonly query: string };
  body: RequestBody;
  config: RuntimeConfig;
  record: RequestRecord;
  /** performance.now() at arrival. */
  startedAt: number;
  /** The upload session the request continues (continuedUpload), read before its body. */
  uploadId: string | undefined;
}

const decoder = new TextDecoder();

/**
 * The upload session a request continues, when the route's provider has them and the
 * query names one (Gemini's `upload_id`). Asked before the body is read, as such a body
 * (file bytes) streams through; the route's own provider, as detection needs the body.
 */
export function continuedUpload(route: Route, query: string, config: RuntimeConfig): string | undefined {
  if (query === '') return undefined;
  const sessions = PROVIDERS[config.providers[route.provider]!.api]!.uploadSessions;
  return (sessions && paramValues(query, sessions.param)[0]) || undefined;
}

export function prepare(o: PrepareOptions): Context {
  const { route, request, body, config, record } = o;
  const { path, query: clientQuery } = o.target;
  const members = body.kind === 'held' ? body.members : undefined;
  const name = route.detect?.(path, members, request.headers) ?? route.provider;
  const settings = config.providers[name]!;
  const provider = PROVIDERS[settings.api]!;
  const keyed = settings.keys.size > 0;
  // With the gateway's keys every client credential goes (and always for a provider
  // that cannot take one); without, the client's own passes ("direct key") unless direct
  // keys are off (then the request is refused, or sent bare where no key is needed).
  const dropCredentials = keyed || provider.keyRequired !== undefined || !settings.directKeys;
  const headers = forwardRequestHeaders(request.headers, dropCredentials);
  provider.prepareHeaders?.(headers, path, keyed);
  const query = dropCredentials ? withoutParams(clientQuery, CREDENTIAL_PARAMS) : clientQuery;
  const usageFormat = provider.usageFormat(path);
  const call: Call = {
    provider,
    settings,
    keyed,
    noKey: keyed ? undefined : noKeyRefusal(name, provider, settings),
    usageFormat,
    apiStyle: apiStyleOf(usageFormat, request.method, path),
    route,
  };

  const model = provider.modelOf(path, members);
  record.provider = name;
  record.model = model;
  record.stream = provider.streams(path, members);
  if (config.source.logs.content && body.kind === 'held')
    record.request_body = decoder.decode(body.readable ?? body.bytes);
  // usage.add_stream_usage: a chat stream is asked for its usage (stream-usage.ts).
  const sent =
    call.apiStyle === 'chat' && body.kind === 'held' && config.source.usage.add_stream_usage
      ? withStreamUsage(body)
      : body;
  return new Context(o, name, model, members, sent, { headers, query }, call);
}

function noKeyRefusal(name: string, provider: Provider, settings: CompiledProvider): GatewayError | undefined {
  if (provider.keyRequired) return new GatewayError(500, 'provider_not_configured', provider.keyRequired);
  if (!settings.directKeys && !settings.keyOptional)
    return new GatewayError(
      401,
      'no_provider_key',
      `provider ${name} has no keys configured and direct keys are disabled (direct_keys: false)`,
    );
  return undefined;
}

/** A request's context: what plugins see (RequestContext), and the proxy's own `call`. */
export class Context implements RequestContext {
  readonly id: string;
  readonly request: Request;
  readonly config: RuntimeConfig;
  readonly endpoint: string;
  readonly path: string;
  readonly query: string;
  readonly startedAt: number;
  readonly record: RequestRecord;
  readonly bodyUnread: boolean;
  readonly uploadId: string | undefined;
  readonly slots: unknown[] = [];
  /** Time spent waiting on the upstream (attempts until headers, retry pauses, bodies read whole), ms. */
  upstreamMs = 0;
  private parsed: Record<string, unknown> | undefined | null = null;

  constructor(
    o: PrepareOptions,
    readonly provider: string,
    /** Not readonly: a WebSocket session learns its model from the handshake's query or its first message. */
    public model: string | undefined,
    readonly members: RootMembers | undefined,
    /** The body as it goes upstream (usage.add_stream_usage may have edited it). */
    readonly body: RequestBody,
    readonly upstream: UpstreamRequest,
    readonly call: Call,
  ) {
    this.id = o.record.request_id;
    this.request = o.request;
    this.config = o.config;
    this.endpoint = o.route.id;
    this.path = o.target.path;
    this.query = o.target.query;
    this.startedAt = o.startedAt;
    this.record = o.record;
    this.uploadId = o.uploadId;
    // An upload session's file bytes are not read, and name no model: not "unread".
    this.bodyUnread =
      o.uploadId === undefined && (body.kind === 'streamed' || (body.kind === 'held' && body.readable === undefined));
  }

  startedUpload(answer: Response): string | undefined {
    const sessions = this.call.provider.uploadSessions;
    const url = sessions && answer.headers.get(sessions.header);
    if (!url) return undefined;
    const q = url.indexOf('?');
    return (q >= 0 && paramValues(url.slice(q + 1).split('#')[0]!, sessions.param)[0]) || undefined;
  }

  /** The JSON body held whole, parsed on first use (the proxy itself only needs `members`). */
  get json(): Record<string, unknown> | undefined {
    if (this.parsed === null) this.parsed = parseObject(this.body, this.members);
    return this.parsed;
  }
}

function parseObject(body: RequestBody, members: RootMembers | undefined): Record<string, unknown> | undefined {
  if (body.kind !== 'held' || !body.readable || !members) return undefined;
  try {
    const parsed: unknown = JSON.parse(decoder.decode(body.readable));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // Not JSON after all: forwarded as is; the upstream gives the client its own error.
  }
  return undefined;
}
