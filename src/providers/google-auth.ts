/**
 * OAuth2 access tokens for a Google service account (RFC 7523 JWT bearer grant):
 * an RS256-signed JWT is exchanged at the credentials' `token_uri`. Tokens are cached
 * until shortly before expiry, and concurrent callers share one refresh.
 */
import { readFileSync } from 'node:fs';

export interface ServiceAccount {
  client_email: string;
  private_key: string;
  private_key_id?: string;
  token_uri: string;
  project_id?: string;
}

const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const DEFAULT_TOKEN_URI = 'https://oauth2.googleapis.com/token';
/** Refresh this long before the token's expiry so no request carries a dying token. */
const REFRESH_MARGIN_MS = 5 * 60_000;
const TOKEN_TIMEOUT_MS = 15_000;

export class TokenError extends Error {
  override name = 'TokenError';
}

/**
 * Accepts the JSON text, an already-parsed object, or a path to the JSON file.
 * Throws a message naming what is wrong, never the key material (nor a credential
 * that was mistaken for a path).
 */
export function parseServiceAccount(input: string | Record<string, unknown>): ServiceAccount {
  let obj: Record<string, unknown>;
  if (typeof input === 'string') {
    const text = input.trim().startsWith('{') ? input : readCredentialsFile(input.trim());
    try {
      obj = JSON.parse(text);
    } catch {
      throw new Error('auth_credentials is not valid JSON (expected a service-account key file)');
    }
  } else obj = input;
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error('auth_credentials must be a JSON object (a service-account key file)');
  if (obj.type !== undefined && obj.type !== 'service_account') {
    // gcloud's `authorized_user` ADC files and external-account configs cannot mint tokens by JWT.
    throw new Error(`auth_credentials.type is ${JSON.stringify(String(obj.type)).slice(0, 40)}; only "service_account" key files are supported`);
  }
  for (const field of ['client_email', 'private_key'] as const) {
    if (typeof obj[field] !== 'string' || !obj[field]) {
      throw new Error(`auth_credentials has no ${field} (expected a service-account key file)`);
    }
  }
  // Keys pasted into env variables often keep their newlines as literal "\n".
  const privateKey = String(obj.private_key).replace(/\\n/g, '\n');
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(privateKey)) {
    throw new Error('auth_credentials.private_key is not a PEM private key');
  }
  let tokenUri = DEFAULT_TOKEN_URI;
  if (obj.token_uri !== undefined && obj.token_uri !== '') {
    if (typeof obj.token_uri !== 'string' || !/^https?:\/\/[^/\s]+/i.test(obj.token_uri) || !URL.canParse(obj.token_uri)) {
      throw new Error('auth_credentials.token_uri must be an http(s) URL');
    }
    tokenUri = obj.token_uri;
  }
  return {
    client_email: String(obj.client_email),
    private_key: privateKey,
    private_key_id: typeof obj.private_key_id === 'string' ? obj.private_key_id : undefined,
    token_uri: tokenUri,
    project_id: typeof obj.project_id === 'string' && obj.project_id ? obj.project_id : undefined,
  };
}

function readCredentialsFile(path: string): string {
  // A value that cannot be a file path is most likely a mangled credential: do not echo it.
  const shown = path.length <= 512 && !/[\s{}"]/.test(path) ? ` ${path}` : '';
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new Error(
      shown
        ? `auth_credentials: cannot read file${shown}: ${code} (expected service-account JSON or a path to it)`
        : 'auth_credentials is neither service-account JSON nor a readable file path',
    );
  }
}

export async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const b64 = pem.replace(/-----(BEGIN|END) [A-Z ]*PRIVATE KEY-----/g, '').replace(/\s+/g, '');
  try {
    return await crypto.subtle.importKey(
      'pkcs8',
      Buffer.from(b64, 'base64'),
      { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      false,
      ['sign'],
    );
  } catch {
    throw new Error('auth_credentials.private_key cannot be read as a PKCS#8 RSA key');
  }
}

/** `: invalid_grant (Invalid JWT Signature.)` from an OAuth error body, or a short excerpt. */
function describeTokenError(text: string): string {
  try {
    const e = JSON.parse(text) as { error?: unknown; error_description?: unknown };
    if (typeof e.error === 'string') {
      return `: ${e.error}${typeof e.error_description === 'string' ? ` (${e.error_description.slice(0, 200)})` : ''}`;
    }
  } catch {
    // not JSON
  }
  const excerpt = text.replace(/\s+/g, ' ').trim().slice(0, 200);
  return excerpt ? `: ${excerpt}` : '';
}

const b64url = (data: string | Uint8Array) => Buffer.from(data).toString('base64url');

export class ServiceAccountTokenSource {
  private token: { value: string; refreshAt: number } | undefined;
  private inflight: Promise<string> | undefined;

  constructor(
    readonly account: ServiceAccount,
    private readonly key: CryptoKey,
  ) {}

  static async create(input: string | Record<string, unknown>): Promise<ServiceAccountTokenSource> {
    const account = parseServiceAccount(input);
    return new ServiceAccountTokenSource(account, await importPrivateKey(account.private_key));
  }

  /** Forget the cached token (the upstream refused it: revoked, or the key was rotated). */
  invalidate(): void {
    this.token = undefined;
  }

  /** A valid access token; fetches a new one only when the cached one is near expiry. */
  getToken(): Promise<string> {
    if (this.token && Date.now() < this.token.refreshAt) return Promise.resolve(this.token.value);
    this.inflight ??= this.refresh().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async refresh(): Promise<string> {
    const assertion = await this.signJwt();
    let res: Response;
    try {
      res = await fetch(this.account.token_uri, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }),
        redirect: 'manual',
        signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS),
      });
    } catch (err) {
      throw new TokenError(`token endpoint ${this.account.token_uri} unreachable: ${(err as Error).message}`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new TokenError(`token endpoint ${this.account.token_uri} answer could not be read: ${(err as Error).message}`);
    }
    if (!res.ok) {
      throw new TokenError(`token endpoint ${this.account.token_uri} answered ${res.status}${describeTokenError(text)}`);
    }
    let body: { access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text);
    } catch {
      throw new TokenError(`token endpoint ${this.account.token_uri} answered non-JSON`);
    }
    if (typeof body.access_token !== 'string' || !body.access_token) {
      throw new TokenError(`token endpoint ${this.account.token_uri} answered without access_token`);
    }
    const expiresIn = Number(body.expires_in);
    const expiresInMs = (Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600) * 1000;
    this.token = {
      value: body.access_token,
      refreshAt: Date.now() + Math.max(expiresInMs - REFRESH_MARGIN_MS, expiresInMs / 2),
    };
    return body.access_token;
  }

  private async signJwt(): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', ...(this.account.private_key_id ? { kid: this.account.private_key_id } : {}) };
    const claims = { iss: this.account.client_email, scope: SCOPE, aud: this.account.token_uri, iat: now, exp: now + 3600 };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = await crypto.subtle.sign('RSASSA-PKCS1-v1_5', this.key, new TextEncoder().encode(input));
    return `${input}.${b64url(new Uint8Array(sig))}`;
  }
}
