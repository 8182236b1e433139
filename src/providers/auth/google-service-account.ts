/**
 * OAuth2 access tokens for a Google service account (RFC 7523 JWT bearer grant):
 * an RS256-signed JWT is exchanged at the credentials' `token_uri` (caching and
 * refresh: token-cache.ts).
 */
import { readFileSync } from 'node:fs';
import { OAuthTokenCache } from './token-cache.ts';

export interface ServiceAccount {
  client_email: string;
  private_key: string;
  private_key_id?: string;
  token_uri: string;
  project_id?: string;
}

const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const DEFAULT_TOKEN_URI = 'https://oauth2.googleapis.com/token';

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
  if (!obj || typeof obj !== 'object' || Array.isArray(obj))
    throw new Error('auth_credentials must be a JSON object (a service-account key file)');
  if (obj.type !== undefined && obj.type !== 'service_account') {
    // gcloud's `authorized_user` ADC files and external-account configs cannot mint tokens by JWT.
    throw new Error(
      `auth_credentials.type is ${JSON.stringify(String(obj.type)).slice(0, 40)}; only "service_account" key files are supported`,
    );
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
    if (
      typeof obj.token_uri !== 'string' ||
      !/^https?:\/\/[^/\s]+/i.test(obj.token_uri) ||
      !URL.canParse(obj.token_uri)
    ) {
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

const b64url = (data: string | Uint8Array) => Buffer.from(data).toString('base64url');

/** A service account's access tokens: an RS256 JWT signed with its key, exchanged at its token_uri. */
export async function serviceAccountTokens(
  input: string | Record<string, unknown>,
): Promise<{ account: ServiceAccount; tokens: OAuthTokenCache }> {
  const account = parseServiceAccount(input);
  const key = await importPrivateKey(account.private_key);
  const tokens = new OAuthTokenCache(account.token_uri, async () => ({
    form: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: await signJwt(account, key) },
  }));
  return { account, tokens };
}

async function signJwt(account: ServiceAccount, key: CryptoKey): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'RS256', typ: 'JWT', ...(account.private_key_id ? { kid: account.private_key_id } : {}) };
  const claims = { iss: account.client_email, scope: SCOPE, aud: account.token_uri, iat: now, exp: now + 3600 };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = await crypto.subtle.sign('RSASSA-PKCS1-v1_5', key, new TextEncoder().encode(input));
  return `${input}.${b64url(new Uint8Array(sig))}`;
}
