/**
 * Amazon Bedrock Runtime: `https://bedrock-runtime.{region}.amazonaws.com` + path
 * (`/model/{modelId}/invoke`, `/invoke-with-response-stream`, `/converse`,
 * `/converse-stream`, `/count-tokens`), in the selected key's region
 * (`network_config.base_url` overrides the host, e.g. a VPC endpoint).
 *
 * Auth always comes from the key (no direct keys: a client's SigV4 signature is bound
 * to the host it signed for): a key with SigV4 credentials (bedrock_key_config
 * access_key/secret_key, or the AWS default chain when it names none) signs every
 * attempt over the request as sent (auth/sigv4.ts), after the client's own signature
 * headers were dropped; a key with a `value` is a Bedrock API key, sent as
 * `Authorization: Bearer`. A body too large to hold (over server.buffer_body_limit_mb)
 * cannot be signed as bytes and is refused: Bedrock, unlike S3, does not take
 * UNSIGNED-PAYLOAD.
 *
 * The model is the path's `{modelId}`, percent-decoded (the SDKs encode ARNs and
 * inference profile ids: `arn%3Aaws%3Abedrock%3A...%2Fus.anthropic...`). A key's
 * `deployments` map a model to the id sent upstream, and its `arn` is put before it
 * (`<arn>/<id>`), as Bifrost does.
 */
import type { CompiledKey, HeaderEntries } from '../config/runtime.ts';
import { GatewayError } from '../core/errors.ts';
import { percentDecoded } from '../lib/query.ts';
import { SIGV4_HEADERS, SigV4Signer } from './auth/sigv4.ts';
import { joinUrl, keyHeaders, type Provider } from './provider.ts';

const MODEL_PATH = /^\/model\/([^/]+)(?=\/|$)/;
const STREAMING_ACTION = /^\/model\/[^/]+\/(?:invoke-with-response-stream|converse-stream)$/;
const NO_HEADERS: HeaderEntries = [];
const NO_KEY =
  'Bedrock passthrough needs a key under providers.bedrock.keys: bedrock_key_config with access_key and secret_key, or with only a region (the AWS environment or instance role), or a value (a Bedrock API key)';

interface BedrockKey {
  /** `https://bedrock-runtime.{region}.amazonaws.com`. */
  host: string;
  /** SigV4 credentials; undefined: the key's value is a Bedrock API key. */
  signer: SigV4Signer | undefined;
  deployments: Readonly<Record<string, string>>;
  arn: string | undefined;
}

export function bedrockModel(path: string): string | undefined {
  const m = MODEL_PATH.exec(path);
  return m ? percentDecoded(m[1]!) : undefined;
}

/** The path with the model id the key maps the requested model to (deployments, arn). */
function upstreamPath(path: string, bk: BedrockKey): string {
  if (bk.arn === undefined && Object.keys(bk.deployments).length === 0) return path;
  const m = MODEL_PATH.exec(path);
  if (!m) return path;
  const model = percentDecoded(m[1]!);
  const mapped = Object.hasOwn(bk.deployments, model) ? bk.deployments[model] : undefined;
  const id = bk.arn !== undefined && !(mapped ?? model).startsWith('arn:') ? `${bk.arn}/${mapped ?? model}` : mapped;
  return id === undefined ? path : `/model/${encodeURIComponent(id)}${path.slice(m[0].length)}`;
}

export const bedrock: Provider = {
  id: 'bedrock',
  defaultBaseUrl: undefined,
  apiKey: { header: 'authorization', prefix: 'Bearer ' },
  genai: { system: 'aws.bedrock', provider: 'aws.bedrock' },
  keyRequired: NO_KEY,
  modelOf: (path) => bedrockModel(path),
  streams: (path) => STREAMING_ACTION.test(path),
  prepareHeaders(headers) {
    // The client signed for the gateway's host with credentials of its own.
    for (const name of SIGV4_HEADERS) headers.delete(name);
  },
  url(path, query, key, settings) {
    const bk = key?.settings as BedrockKey | undefined;
    if (!bk) throw new GatewayError(500, 'provider_not_configured', NO_KEY);
    return joinUrl(settings.baseUrl ?? bk.host, upstreamPath(path, bk), query);
  },
  authorize: (key) => ((key.settings as BedrockKey).signer ? NO_HEADERS : keyHeaders(key)),
  sign(request, key) {
    const signer = (key.settings as BedrockKey).signer;
    if (!signer) {
      // A Bedrock API key: no signature, nor what a signing key's earlier attempt left.
      for (const name of SIGV4_HEADERS) if (name !== 'authorization') request.headers.delete(name);
      return;
    }
    if (request.body instanceof ReadableStream)
      throw new GatewayError(
        413,
        'payload_too_large',
        'a Bedrock request is signed over its exact bytes, and this body is over server.buffer_body_limit_mb, the most the gateway holds: raise that limit to send it',
      );
    return signer.sign({ method: request.method, url: request.url, headers: request.headers, body: request.body });
  },
  usageFormat: () => 'bedrock',
  priceCatalog: 'aws',
  compileKey(input, key, report): CompiledKey {
    const bc = input.bedrock_key_config;
    const region = bc?.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    const label = `Bedrock key ${key.name}`;
    let signer: SigV4Signer | undefined;
    if (bc?.access_key !== undefined || bc?.secret_key !== undefined || bc?.session_token !== undefined) {
      if (!bc.access_key || !bc.secret_key)
        report.problem('bedrock_key_config', 'access_key and secret_key go together (and session_token needs both)');
      if (key.value)
        report.problem(
          'value',
          'a Bedrock key is a value (a Bedrock API key) or bedrock_key_config access_key and secret_key, not both',
        );
      signer = new SigV4Signer(label, region, 'bedrock', {
        accessKeyId: bc.access_key ?? '',
        secretAccessKey: bc.secret_key ?? '',
        sessionToken: bc.session_token,
      });
    } else if (!key.value) {
      signer = new SigV4Signer(label, region, 'bedrock', undefined);
    }
    const settings: BedrockKey = {
      host: `https://bedrock-runtime.${region}.amazonaws.com`,
      signer,
      deployments: bc?.deployments ?? {},
      arn: bc?.arn?.replace(/\/+$/, ''),
    };
    key.settings = settings;
    return key;
  },
};
