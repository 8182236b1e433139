/**
 * The config file's shape, validated with valibot. The `providers` section accepts
 * Bifrost's `config.json` provider shape; Bifrost-only fields we do not use are
 * accepted and ignored (listed in IGNORED_BIFROST_FIELDS) so a Bifrost config loads.
 */
import * as v from 'valibot';
import { isIpOrCidr } from '../lib/ip-ranges.ts';
import { MAX_WORKERS } from '../lib/workers.ts';

/** The providers built in: each has a route of its own and is there even when the config leaves it out. */
export const PROVIDER_IDS = ['openai', 'anthropic', 'azure', 'gemini', 'vertex', 'bedrock'] as const;
export type ProviderId = (typeof PROVIDER_IDS)[number];

/** A provider's name under `providers:`: it is a path segment (`/passthrough/<name>/`) and a metrics label. */
export const PROVIDER_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

const nonEmpty = v.pipe(v.string(), v.nonEmpty('must not be empty'));
const positive = v.pipe(v.number(), v.minValue(0, 'must be >= 0'));
const httpUrl = v.pipe(
  v.string(),
  v.url('must be an absolute URL'),
  v.regex(/^https?:\/\//i, 'must start with http:// or https://'),
);
/** Bifrost accepts some provider/key sections we have no use for; keep loading them. */
const ignored = v.optional(v.unknown());

const GO_DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** Milliseconds as a number, or a Go duration string as Bifrost accepts ("500ms", "5s", "1m30s"). */
const milliseconds = v.union([
  v.pipe(v.number(), v.minValue(0, 'must be >= 0')),
  v.pipe(
    v.string(),
    v.regex(GO_DURATION, 'must be milliseconds or a duration like "500ms", "5s", "1m"'),
    v.transform((d) =>
      [...d.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)].reduce(
        (ms, [, n, unit]) => ms + Number(n) * UNIT_MS[unit!]!,
        0,
      ),
    ),
  ),
]);

const AzureKeyConfig = v.strictObject({
  endpoint: v.optional(httpUrl),
  api_version: v.optional(v.pipe(v.union([v.string(), v.number()]), v.transform(String))),
  deployments: v.optional(v.record(v.string(), v.string())),
  // Entra ID (Azure AD) service principal, Bifrost's fields: all three set, the gateway
  // sends `Authorization: Bearer <token>` (client credentials grant) instead of the value.
  client_id: v.optional(nonEmpty),
  client_secret: v.optional(nonEmpty),
  tenant_id: v.optional(nonEmpty),
  /** Token scopes; default https://cognitiveservices.azure.com/.default. */
  scopes: v.optional(v.pipe(v.array(nonEmpty), v.minLength(1))),
  /** Entra authority (sovereign clouds, a private token proxy); default https://login.microsoftonline.com. */
  authority_host: v.optional(httpUrl),
  /**
   * Not in Bifrost: authenticate as the host's managed identity (true: system-assigned;
   * `{ client_id }`: a user-assigned one), with a token from AKS workload identity, App
   * Service or the VM's metadata service, whichever the environment provides.
   */
  managed_identity: v.optional(v.union([v.boolean(), v.strictObject({ client_id: v.optional(nonEmpty) })])),
});

const VertexKeyConfig = v.strictObject({
  project_id: v.optional(nonEmpty),
  project_number: ignored,
  region: v.optional(nonEmpty),
  /** Service-account JSON (string or object), a path to that file, or `env.NAME`. */
  auth_credentials: v.optional(v.union([v.string(), v.record(v.string(), v.unknown())])),
});

/**
 * Amazon Bedrock, Bifrost's fields. access_key + secret_key (+ session_token): requests
 * are signed (SigV4) with them; none of the three and no `value`: with the AWS
 * environment, shared config, web identity, ECS or instance role (the default chain);
 * a `value` instead is a Bedrock API key, sent as `Authorization: Bearer`.
 */
const BedrockKeyConfig = v.strictObject({
  access_key: v.optional(nonEmpty),
  secret_key: v.optional(nonEmpty),
  session_token: v.optional(nonEmpty),
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. */
  region: v.optional(v.pipe(nonEmpty, v.regex(/^[a-z0-9-]+$/, 'must be an AWS region such as us-east-1'))),
  /** An ARN prefix the model id is appended to (`<arn>/<model>`), e.g. an inference profile's. */
  arn: v.optional(nonEmpty),
  /** Model in the path -> the model id (or inference profile) sent upstream. */
  deployments: v.optional(v.record(v.string(), nonEmpty)),
});

export const KeySchema = v.strictObject({
  name: v.optional(nonEmpty),
  id: ignored,
  value: v.optional(v.string()),
  models: v.optional(v.array(v.string()), ['*']),
  weight: v.optional(v.pipe(v.number(), v.minValue(0, 'must be >= 0')), 1),
  azure_key_config: v.optional(AzureKeyConfig),
  vertex_key_config: v.optional(VertexKeyConfig),
  bedrock_key_config: v.optional(BedrockKeyConfig),
  openai_key_config: ignored,
  huggingface_key_config: ignored,
  use_for_batch_api: ignored,
  description: ignored,
  status: ignored,
  config_hash: ignored,
  aliases: ignored,
  enabled: v.optional(v.boolean(), true),
});
export type KeyInput = v.InferOutput<typeof KeySchema>;

export const NetworkSchema = v.strictObject({
  base_url: v.optional(httpUrl),
  extra_headers: v.optional(v.record(v.string(), v.string()), {}),
  default_request_timeout_in_seconds: v.optional(v.pipe(v.number(), v.minValue(1)), 300),
  /** Not in Bifrost: a stream with no bytes for this long is ended. */
  stream_idle_timeout_in_seconds: v.optional(v.pipe(v.number(), v.minValue(1)), 300),
  max_retries: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(10)), 0),
  retry_backoff_initial: v.optional(milliseconds, 500),
  retry_backoff_max: v.optional(milliseconds, 5000),
  /** Not in Bifrost: a Retry-After longer than this is not waited for; the answer is returned. */
  max_retry_after_seconds: v.optional(positive, 30),
  /** PEM CA certificate(s) to trust for this provider's upstream (a private endpoint or TLS proxy). */
  ca_cert_pem: v.optional(nonEmpty),
  /** Skip TLS certificate verification upstream: only for testing; logged as a warning. */
  insecure_skip_verify: v.optional(v.boolean(), false),
  // Bifrost transport tuning with no equivalent here (Bun's fetch manages connections).
  max_conns_per_host: ignored,
  enforce_http2: ignored,
  beta_header_overrides: ignored,
});
export type NetworkInput = v.InferOutput<typeof NetworkSchema>;

export const ProviderSchema = v.strictObject({
  /**
   * Not for built-in names: the implementation (wire format, usage, auth) a provider of
   * another name uses, e.g. `openai` for vLLM, Groq, Mistral. Bifrost's shape says the same
   * as `custom_provider_config.base_provider_type`.
   */
  api: v.optional(nonEmpty),
  /** How its keys are sent, when not as the `api` sends them: `header: prefix + key`. */
  auth: v.optional(
    v.strictObject({
      header: v.pipe(nonEmpty, v.regex(/^[a-z0-9!#$%&'*+.^_`|~-]+$/i, 'must be a header name')),
      prefix: v.optional(v.string(), ''),
    }),
  ),
  keys: v.optional(v.array(KeySchema), []),
  network_config: v.optional(NetworkSchema, {}),
  /** null: follow the top-level `direct_keys`. */
  direct_keys: v.optional(v.boolean()),
  concurrency_and_buffer_size: ignored,
  proxy_config: ignored,
  send_back_raw_response: ignored,
  send_back_raw_request: ignored,
  custom_provider_config: v.optional(v.looseObject({ base_provider_type: v.optional(nonEmpty) })),
  store_raw_request_response: ignored,
  openai_config: ignored,
  allowed_requests: ignored,
});
export type ProviderInput = v.InferOutput<typeof ProviderSchema>;

export const ServerSchema = v.strictObject({
  host: v.optional(nonEmpty, '127.0.0.1'),
  port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535)), 8080),
  max_request_body_mb: v.optional(v.pipe(v.number(), v.minValue(0.001)), 100),
  /** Bodies with a known length up to this size are read whole (model lookup, replay). */
  buffer_body_limit_mb: v.optional(v.pipe(v.number(), v.minValue(0)), 8),
  shutdown_grace_seconds: v.optional(positive, 30),
  /**
   * A client connection that sends nothing for this long is closed: between requests,
   * and while its request body is read. Not while a request waits on its upstream
   * (lifted per request once the body is in). At most 255 (Bun's limit).
   */
  idle_timeout_seconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(255)), 30),
  /** `server-timing: gw;dur=.., upstream;dur=..` on every relayed answer. */
  server_timing: v.optional(v.boolean(), true),
  /**
   * The gateway's address as clients reach it (behind a reverse proxy or TLS terminator),
   * `scheme://host[:port][/path]`: provider URLs rewritten to the gateway start with it.
   * Unset: the request's own scheme and Host.
   */
  public_url: v.optional(
    v.pipe(
      httpUrl,
      v.check((u) => {
        const url = new URL(u);
        return !url.search && !url.hash && !url.username && !url.password && !u.includes('?') && !u.includes('#');
      }, 'must be scheme://host[:port][/path], without credentials, query or fragment'),
    ),
  ),
  /**
   * Addresses (or CIDR ranges) of reverse proxies whose X-Forwarded-Proto / -Host / -Port
   * headers are believed when public_url is unset; from anyone else they are ignored.
   */
  trusted_proxies: v.optional(
    v.array(v.pipe(v.string(), v.check(isIpOrCidr, 'must be an IP address or a CIDR range like 10.0.0.0/8'))),
    [],
  ),
  /**
   * Gateway processes serving the port (SO_REUSEPORT): `auto` = the CPUs this process may
   * use (affinity mask and cgroup quota), 1 = a single process. Restart to change.
   */
  workers: v.optional(
    v.union([v.literal('auto'), v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_WORKERS))]),
    'auto',
  ),
  /** Serve HTTPS and WSS with this certificate (PEM files); unset: plain HTTP. */
  tls: v.optional(
    v.strictObject({
      /** The certificate, and the chain up to the CA after it. */
      cert_file: nonEmpty,
      /** Its private key (unencrypted). */
      key_file: nonEmpty,
    }),
  ),
  /** WebSocket sessions (realtime APIs). */
  websocket: v.optional(
    v.strictObject({
      /** A larger message, either way, closes the session with 1009. */
      max_message_mb: v.optional(v.pipe(v.number(), v.minValue(0.001), v.maxValue(1024)), 16),
      /** Bytes held for a peer that reads too slowly, per direction; past it the session is closed with 1013. */
      buffer_limit_mb: v.optional(v.pipe(v.number(), v.minValue(0.001), v.maxValue(1024)), 16),
    }),
    {},
  ),
});

export const LogsSchema = v.strictObject({
  /** NDJSON request log; null/empty disables the file (the app log stays on stderr). */
  file: v.optional(v.nullable(v.string()), './logs/requests.ndjson'),
  content: v.optional(v.boolean(), false),
  content_max_bytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 8192),
  level: v.optional(v.picklist(['trace', 'debug', 'info', 'warn', 'error', 'fatal']), 'info'),
});

export const UsageSchema = v.strictObject({
  /**
   * Add `stream_options.include_usage: true` to OpenAI chat stream requests that do not
   * set it, so their usage can be read: changes the request bytes, and one more chunk
   * (with empty `choices`) reaches the client.
   */
  add_stream_usage: v.optional(v.boolean(), false),
});

export const MetricsSchema = v.strictObject({
  enabled: v.optional(v.boolean(), true),
  path: v.optional(v.pipe(v.string(), v.startsWith('/')), '/metrics'),
  /** When set, /metrics requires `Authorization: Bearer <token>`. */
  bearer_token: v.optional(v.string()),
});

export const TracingSchema = v.strictObject({
  /** OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces. Unset: tracing off. */
  endpoint: v.optional(httpUrl),
  service_name: v.optional(nonEmpty, 'skybridge'),
  headers: v.optional(v.record(v.string(), v.string()), {}),
  sample_ratio: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1)), 1),
  /** OTLP/HTTP encoding, named as in OTEL_EXPORTER_OTLP_PROTOCOL. */
  protocol: v.optional(v.picklist(['http/json', 'http/protobuf']), 'http/json'),
});

const RateLimitSchema = v.strictObject({
  requests_per_minute: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  tokens_per_minute: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
});

const BudgetSchema = v.strictObject({
  /** Token budget per period. */
  max_tokens: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  /** Cost budget per period in USD; needs `governance.prices`. */
  max_cost_usd: v.optional(v.pipe(v.number(), v.minValue(0))),
  period: v.optional(v.picklist(['hour', 'day', 'week', 'month']), 'month'),
});

const VirtualKeySchema = v.strictObject({
  name: nonEmpty,
  value: nonEmpty,
  /** Provider names (built-in or configured); default: all. */
  providers: v.optional(v.array(nonEmpty)),
  models: v.optional(v.array(v.string()), ['*']),
  rate_limit: v.optional(RateLimitSchema),
  budget: v.optional(BudgetSchema),
});

const PriceSchema = v.strictObject({
  input_per_million: positive,
  output_per_million: positive,
  /** Cached input read; default: the input rate. */
  cache_read_per_million: v.optional(positive),
  /** Input written to the prompt cache (Anthropic); default: the input rate. */
  cache_write_per_million: v.optional(positive),
  /** Reasoning (thinking) output tokens; default: the output rate. */
  reasoning_per_million: v.optional(positive),
});

const unique =
  (field: 'name' | 'value') =>
  <T extends { name: string; value: string }>(keys: T[]): boolean =>
    new Set(keys.map((k) => k[field])).size === keys.length;

export const GovernanceSchema = v.strictObject({
  required: v.optional(v.boolean(), false),
  virtual_keys: v.optional(
    v.pipe(
      v.array(VirtualKeySchema),
      v.check(unique('name'), 'virtual key names must be unique'),
      v.check(unique('value'), 'virtual key values must be unique'),
    ),
    [],
  ),
  /** redis://[user:password@]host:port[/db] (rediss:// for TLS). Unset: counters in memory. */
  redis_url: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^(redis|rediss|valkey|valkeys)(\+(tls|unix))?:\/\//i, 'must be a redis:// or rediss:// URL'),
    ),
  ),
  /** Upper bound for every Redis operation (connecting included). */
  redis_timeout_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(10), v.maxValue(10000)), 250),
  /** Prefix of every counter key in Redis (several gateway fleets may share one Redis). */
  redis_key_prefix: v.optional(v.string(), 'skybridge:gov:'),
  /** What to do when Redis cannot be reached: let requests through or refuse them. */
  on_store_error: v.optional(v.picklist(['fail_open', 'fail_closed']), 'fail_open'),
  /**
   * USD per million tokens by model ("prefix*" patterns allowed): the price of every
   * request's cost_usd and of max_cost_usd budgets, before the genai-prices catalog.
   */
  prices: v.optional(v.record(v.string(), PriceSchema), {}),
});

/** Request log explorer: an SQLite index beside the log, /api/logs, /api/stats, /ui (docs/explorer.md). */
export const ExplorerSchema = v.strictObject({
  enabled: v.optional(v.boolean(), true),
  /** Bearer token for /api/logs* and /api/stats. Unset: they answer loopback clients only. */
  admin_token: v.optional(nonEmpty),
  /** The index keeps at most this many requests (the newest) ... */
  retention_max_rows: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000_000)), 100_000),
  /** ... and none older than this (fractions allowed). The NDJSON log keeps everything. */
  retention_days: v.optional(v.pipe(v.number(), v.minValue(0.0001, 'must be > 0'), v.maxValue(3650)), 7),
});

export const PLUGIN_IDS = ['governance', 'logging', 'explorer', 'metrics', 'tracing'] as const;
export type PluginId = (typeof PLUGIN_IDS)[number];

export const ConfigSchema = v.strictObject({
  $schema: ignored,
  server: v.optional(ServerSchema, {}),
  logs: v.optional(LogsSchema, {}),
  usage: v.optional(UsageSchema, {}),
  providers: v.optional(
    v.record(
      v.pipe(v.string(), v.regex(PROVIDER_NAME, 'a provider name is lower-case letters, digits and dashes')),
      ProviderSchema,
    ),
    {},
  ),
  /** A provider without keys forwards the client's own credential unless this is false. */
  direct_keys: v.optional(v.boolean(), true),
  metrics: v.optional(MetricsSchema, {}),
  tracing: v.optional(TracingSchema, {}),
  governance: v.optional(GovernanceSchema),
  explorer: v.optional(ExplorerSchema, {}),
  /** Plugin order; a plugin left out is off. Default: all of them in this order. */
  plugins: v.optional(v.array(v.picklist(PLUGIN_IDS)), [...PLUGIN_IDS]),
  // Bifrost top-level sections that have no meaning here; accepted so its config.json loads.
  client: ignored,
  config_store: ignored,
  logs_store: ignored,
  vector_store: ignored,
  mcp: ignored,
  framework: ignored,
  auth_config: ignored,
});

export type ConfigInput = v.InferInput<typeof ConfigSchema>;
export type Config = v.InferOutput<typeof ConfigSchema>;
