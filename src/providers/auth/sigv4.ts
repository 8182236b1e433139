/**
 * AWS Signature Version 4 over one outgoing request (@smithy/signature-v4, the AWS SDK's
 * own signer): the canonical request covers the method, the path as sent (each segment
 * URI-encoded again, as every AWS service but S3 expects), the query, the headers about
 * to be sent and the SHA-256 of the exact body bytes. Credentials are fixed (a key's
 * access_key/secret_key) or come from the default chain of the AWS SDK (environment,
 * shared config, web identity, ECS, instance metadata), loaded on first use only.
 */
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, ChecksumConstructor } from '@smithy/types';
import { GatewayError } from '../../core/errors.ts';

/** The headers a signature consists of: a client's own never reach the upstream. */
export const SIGV4_HEADERS = ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'] as const;

/** One request as it will be sent. */
export interface SignedRequest {
  readonly method: string;
  readonly url: string;
  /** Edited in place: the signature's headers replace any earlier ones. */
  readonly headers: Headers;
  readonly body: Uint8Array | null;
}

const Sha256 = Hash.bind(null, 'sha256') as unknown as ChecksumConstructor;

let defaultChain: Promise<AwsCredentialIdentityProvider> | undefined;

/**
 * The AWS SDK's default credential chain, imported on first use (no process that does
 * not sign with it loads it, and nothing is asked of the network before a request). The
 * chain caches what it finds and refreshes it before it expires.
 */
function defaultCredentials(): Promise<AwsCredentialIdentityProvider> {
  defaultChain ??= import('@aws-sdk/credential-providers').then(({ fromNodeProviderChain }) => fromNodeProviderChain());
  return defaultChain;
}

export class SigV4Signer {
  private readonly signer: SignatureV4;

  constructor(
    /** "Bedrock key main": who an error message names. */
    private readonly label: string,
    region: string,
    service: string,
    /** Fixed credentials; undefined: the default chain. */
    credentials: AwsCredentialIdentity | undefined,
  ) {
    this.signer = new SignatureV4({
      service,
      region,
      sha256: Sha256,
      credentials: credentials ?? (async () => (await defaultCredentials())()),
    });
  }

  async sign(request: SignedRequest): Promise<void> {
    const url = new URL(request.url);
    const headers: Record<string, string> = {};
    for (const name of SIGV4_HEADERS) request.headers.delete(name);
    for (const [name, value] of request.headers) headers[name] = value;
    headers.host = url.host;
    let signed: { headers: Record<string, string> };
    try {
      signed = await this.signer.sign({
        method: request.method,
        protocol: url.protocol,
        hostname: url.hostname,
        port: url.port ? Number(url.port) : undefined,
        path: url.pathname,
        query: queryOf(url.search),
        headers,
        body: request.body ?? undefined,
      });
    } catch (err) {
      throw new GatewayError(
        502,
        'upstream_auth_error',
        `${this.label}: no AWS credentials to sign with (${(err as Error).message ?? 'credential chain failed'})`,
      );
    }
    for (const name of SIGV4_HEADERS) {
      const value = signed.headers[name];
      if (value !== undefined) request.headers.set(name, value);
    }
  }
}

/** A raw query as the signer wants it: decoded names and values (it encodes them again, RFC 3986). */
function queryOf(search: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  if (search.length <= 1) return query;
  for (const pair of search.slice(1).split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const name = decode(eq < 0 ? pair : pair.slice(0, eq));
    const value = eq < 0 ? '' : decode(pair.slice(eq + 1));
    const seen = query[name];
    query[name] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
  }
  return query;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
