/**
 * Google service-account test material made at run time (no key is ever committed) and
 * a fake OAuth token endpoint for the MockUpstream that checks the RS256 JWT-bearer grant
 * the gateway sends, the way oauth2.googleapis.com would.
 */
import type { MockUpstream, Recorded } from './mock-upstream.ts';

export interface TestServiceAccount {
  /** The service-account key file as an object (what `auth_credentials` holds). */
  json: Record<string, string>;
  /** The same as JSON text (what `env.VERTEX_SA_JSON` would hold). */
  text: string;
  publicKey: CryptoKey;
  email: string;
  /** A slice of the private key's base64, to check it never appears in messages. */
  secretFragment: string;
}

let serial = 0;

/**
 * Wrap base64 PKCS#8 in PEM armour. The armour is assembled here rather than written
 * out so that no committed file carries what secret scanners take for a private key.
 */
export function pemPrivateKey(base64: string): string {
  const label = ['PRIVATE', 'KEY'].join(' ');
  return `-----BEGIN ${label}-----\n${base64}\n-----END ${label}-----\n`;
}

export async function makeServiceAccount(tokenUri: string, projectId = 'sa-file-project'): Promise<TestServiceAccount> {
  const pair = (await crypto.subtle.generateKey(
    { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    true,
    ['sign', 'verify'],
  )) as CryptoKeyPair;
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', pair.privateKey)).toString('base64');
  const pem = pemPrivateKey(pkcs8.match(/.{1,64}/g)!.join('\n'));
  const email = `gateway-${++serial}@${projectId}.iam.gserviceaccount.com`;
  const json = {
    type: 'service_account',
    project_id: projectId,
    private_key_id: `kid-${serial}`,
    private_key: pem,
    client_email: email,
    client_id: '100000000000000000000',
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: tokenUri,
  };
  return { json, text: JSON.stringify(json), publicKey: pair.publicKey, email, secretFragment: pkcs8.slice(100, 140) };
}

export interface TokenEndpoint {
  /** Grants the endpoint answered (successful or not). */
  calls: number;
  /** Tokens handed out, in order. */
  issued: string[];
  /** Problems found in the grants (should stay empty). */
  problems: string[];
}

export interface TokenEndpointOptions {
  /** Delay before answering, to let concurrent requests pile up on one refresh. */
  delayMs?: number;
  /** Answer this status (and an OAuth error body) for the first `failures` grants. */
  failStatus?: number;
  failures?: number;
  expiresIn?: number;
}

/**
 * Answer POST `path` on the mock like Google's token endpoint: verify the grant type and
 * the JWT (RS256 signature with the account's public key, iss, aud, scope, iat/exp) and
 * hand out `ya29.gw-<path>-<n>` tokens.
 */
export function installTokenEndpoint(
  mock: MockUpstream,
  path: string,
  sa: TestServiceAccount,
  opts: TokenEndpointOptions = {},
): TokenEndpoint {
  const state: TokenEndpoint = { calls: 0, issued: [], problems: [] };
  const answer = async (rec: Recorded): Promise<Response> => {
    const n = ++state.calls;
    if (opts.delayMs) await Bun.sleep(opts.delayMs);
    if (opts.failStatus && n <= (opts.failures ?? Infinity)) {
      return Response.json(
        { error: 'internal_failure', error_description: 'token service is down' },
        { status: opts.failStatus },
      );
    }
    const problem = await checkGrant(
      rec.method,
      rec.headers['content-type'],
      new TextDecoder().decode(rec.body),
      sa,
      `${mock.url}${path}`,
    );
    if (problem) {
      state.problems.push(problem);
      return Response.json({ error: 'invalid_grant', error_description: problem }, { status: 400 });
    }
    const token = `ya29.gw-${path.replaceAll('/', '')}-${n}`;
    state.issued.push(token);
    return Response.json({ access_token: token, expires_in: opts.expiresIn ?? 3599, token_type: 'Bearer' });
  };
  mock.respondWith((_req, rec) => (rec.path === path ? answer(rec) : undefined));
  return state;
}

async function checkGrant(
  method: string,
  contentType: string | undefined,
  body: string,
  sa: TestServiceAccount,
  audience: string,
): Promise<string | undefined> {
  if (method !== 'POST') return `method ${method}`;
  if (!contentType?.startsWith('application/x-www-form-urlencoded')) return `content-type ${contentType}`;
  const form = new URLSearchParams(body);
  if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer')
    return `grant_type ${form.get('grant_type')}`;
  const parts = (form.get('assertion') ?? '').split('.');
  if (parts.length !== 3) return 'assertion is not a JWT';
  const [h, c, s] = parts as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const claims = JSON.parse(Buffer.from(c, 'base64url').toString());
  if (header.alg !== 'RS256' || header.typ !== 'JWT') return `header ${JSON.stringify(header)}`;
  if (header.kid !== sa.json.private_key_id) return `kid ${header.kid}`;
  const ok = await crypto.subtle.verify(
    'RSASSA-PKCS1-v1_5',
    sa.publicKey,
    Buffer.from(s, 'base64url'),
    new TextEncoder().encode(`${h}.${c}`),
  );
  if (!ok) return 'bad signature';
  if (claims.iss !== sa.email) return `iss ${claims.iss}`;
  if (claims.aud !== audience) return `aud ${claims.aud}`;
  if (claims.scope !== 'https://www.googleapis.com/auth/cloud-platform') return `scope ${claims.scope}`;
  const now = Date.now() / 1000;
  if (!(claims.iat <= now + 5 && claims.iat >= now - 60 && claims.exp - claims.iat === 3600))
    return `iat/exp ${claims.iat}/${claims.exp}`;
  return undefined;
}
