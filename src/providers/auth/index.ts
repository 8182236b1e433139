/**
 * One factory from a key's credential settings to the Credential the request path uses
 * (Envoy AI Gateway's backendauth has the same shape): an API key is a fixed header; an
 * Entra ID service principal, a managed identity or a Google service account is an
 * access token minted on demand (token-cache.ts) and sent as `Authorization: Bearer`.
 *
 * Token sources outlive config reloads when nothing about them changed: a token stays
 * valid for an hour, and a reload must not cost every key a new one.
 *
 * In a group of workers (`shareTokens`), tokens are minted by the primary only, once per
 * key for the group: a worker's token source asks the primary and keeps the answer until
 * its refresh time, so a request never waits on the primary while the token is fresh.
 */
import type { Credential, HeaderEntries } from '../../config/runtime.ts';
import { GatewayError } from '../../core/errors.ts';
import { type Group, topic } from '../../core/group.ts';
import { entraTokenSource } from './entra.ts';
import { serviceAccountTokens } from './google-service-account.ts';
import { MANAGED_IDENTITY_ENV, managedIdentityTokenSource } from './managed-identity.ts';
import { type MintedToken, type OAuthTokenCache, TokenError, type TokenSource } from './token-cache.ts';

export { DEFAULT_AUTHORITY_HOST, DEFAULT_ENTRA_SCOPES } from './entra.ts';

export type CredentialSpec =
  /** `header: prefix + value`, e.g. `authorization: Bearer sk-...`. */
  | { kind: 'api-key'; header: string; prefix: string; value: string }
  | {
      kind: 'entra';
      label: string;
      tenantId: string;
      clientId: string;
      clientSecret: string;
      scopes: readonly string[];
      authorityHost: string;
    }
  | { kind: 'managed-identity'; label: string; clientId: string | undefined; scopes: readonly string[] }
  /** JSON text, a parsed object, or a path to the key file. */
  | { kind: 'google-service-account'; label: string; credentials: string | Record<string, unknown> };

/** A Google service account's credential knows its project (the default for the key's). */
export type ServiceAccountCredential = Credential & { readonly projectId: string | undefined };

export function credentialFor(
  spec: Extract<CredentialSpec, { kind: 'api-key' | 'entra' | 'managed-identity' }>,
): Credential;
export function credentialFor(
  spec: Extract<CredentialSpec, { kind: 'google-service-account' }>,
): Promise<ServiceAccountCredential>;
export function credentialFor(spec: CredentialSpec): Credential | Promise<ServiceAccountCredential> {
  switch (spec.kind) {
    case 'api-key':
      return apiKey(spec.header, `${spec.prefix}${spec.value}`);
    case 'entra':
      return new TokenCredential(
        spec.label,
        kept(['entra', spec.tenantId, spec.clientId, spec.clientSecret, spec.scopes, spec.authorityHost], () =>
          entraTokenSource(spec),
        ),
      );
    case 'managed-identity': {
      const env = Object.fromEntries(MANAGED_IDENTITY_ENV.map((name) => [name, process.env[name]]));
      return new TokenCredential(
        spec.label,
        kept(['mi', spec.clientId, spec.scopes, env], () =>
          managedIdentityTokenSource(spec.clientId, spec.scopes, env),
        ),
      );
    }
    case 'google-service-account':
      return serviceAccount(spec.label, spec.credentials);
  }
}

/** A fixed header: its entries are built once. */
export function apiKey(header: string, value: string): Credential {
  const entries: HeaderEntries = [[header, value]];
  return { kind: 'api-key', headers: () => entries, invalidate: () => {} };
}

/** An access token from `tokens`, sent as `Authorization: Bearer`; a failure to get one is a 502 naming the key. */
class TokenCredential implements Credential {
  readonly kind = 'token';
  private lastToken = '';
  private lastEntries: HeaderEntries = [];

  constructor(
    /** "Azure key eastus": who the error message names. */
    private readonly label: string,
    private readonly tokens: TokenSource,
  ) {}

  async headers(): Promise<HeaderEntries> {
    let token: string;
    try {
      token = await this.tokens.getToken();
    } catch (err) {
      throw new GatewayError(
        502,
        'upstream_auth_error',
        `${this.label}: ${err instanceof TokenError ? err.message : 'could not get an access token'}`,
      );
    }
    if (token !== this.lastToken) {
      this.lastToken = token;
      this.lastEntries = [['authorization', `Bearer ${token}`]];
    }
    return this.lastEntries;
  }

  invalidate(): void {
    this.tokens.invalidate();
  }
}

const serviceAccounts = new Map<string, Promise<{ tokens: TokenSource; projectId: string | undefined }>>();

/** Parsing and key import are the slow part: kept per credentials text; a failure is not kept. */
async function serviceAccount(
  label: string,
  credentials: string | Record<string, unknown>,
): Promise<ServiceAccountCredential> {
  const cacheKey = typeof credentials === 'string' ? credentials : JSON.stringify(credentials);
  let source = serviceAccounts.get(cacheKey);
  if (!source) {
    const minted = serviceAccountTokens(credentials);
    const id = sourceId(['google-service-account', cacheKey]);
    if (!primary) mintedHere.set(id, () => minted.then((m) => m.tokens));
    source = minted.then(({ account, tokens }) => ({
      tokens: primary ? new GroupTokenSource(id, primary) : tokens,
      projectId: account.project_id,
    }));
    serviceAccounts.set(cacheKey, source);
    source.catch(() => {
      serviceAccounts.delete(cacheKey);
      mintedHere.delete(id);
    });
  }
  const { tokens, projectId } = await source;
  return Object.assign(new TokenCredential(label, tokens), { projectId });
}

const tokenSources = new Map<string, TokenSource>();

function kept(key: unknown[], make: () => OAuthTokenCache): TokenSource {
  const cacheKey = JSON.stringify(key);
  let source = tokenSources.get(cacheKey);
  if (!source) {
    const id = sourceId(key);
    if (primary) {
      source = new GroupTokenSource(id, primary);
    } else {
      const local = make();
      mintedHere.set(id, () => Promise.resolve(local));
      source = local;
    }
    tokenSources.set(cacheKey, source);
  }
  return source;
}

// --- tokens shared by a group of workers ---------------------------------------------

/** A worker asks the primary for a key's token (by the id of its token source). */
const MINT = topic<string, MintedToken>('auth.mint');
/** A worker's upstream refused this token (401): the primary forgets it, unless already replaced. */
const REFUSED = topic<{ id: string; token: string }>('auth.refused');
/** The primary's token request waits for the token endpoint (15 s) and a little more. */
const MINT_TIMEOUT_MS = 20_000;

/** In a worker: the primary that mints its tokens. */
let primary: Group | undefined;
/** Token sources that mint in this process, by id (the primary answers its workers from these). */
const mintedHere = new Map<string, () => Promise<OAuthTokenCache>>();

/** The same credentials give the same id in every process of the group; no secret travels. */
function sourceId(key: unknown[]): string {
  return new Bun.CryptoHasher('sha256').update(JSON.stringify(key)).digest('hex');
}

/**
 * Join a group: the primary mints for its workers, a worker asks the primary. Called
 * before any config is compiled in this process (credentials made earlier mint here).
 */
export function shareTokens(group: Group): void {
  if (group.role === 'worker') primary = group;
  if (group.role !== 'primary') return;
  group.on(MINT, async (id) => {
    const source = mintedHere.get(id);
    if (!source) throw new TokenError('the primary process has no such credential (config reloading?)');
    return (await source()).minted();
  });
  group.on(REFUSED, async ({ id, token }) => (await mintedHere.get(id)?.())?.invalidate(token));
}

/** A worker's token source: the primary's token, kept here until its refresh time. */
class GroupTokenSource implements TokenSource {
  private token: MintedToken | undefined;
  private inflight: Promise<string> | undefined;

  constructor(
    private readonly id: string,
    private readonly group: Group,
  ) {}

  getToken(): Promise<string> {
    if (this.token && Date.now() < this.token.refreshAt) return Promise.resolve(this.token.value);
    this.inflight ??= this.group
      .request(MINT, this.id, { timeoutMs: MINT_TIMEOUT_MS })
      .then(
        (token) => {
          this.token = token;
          return token.value;
        },
        (err) => {
          throw err instanceof TokenError ? err : new TokenError((err as Error).message);
        },
      )
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  invalidate(): void {
    const refused = this.token;
    this.token = undefined;
    if (refused) this.group.request(REFUSED, { id: this.id, token: refused.value }).catch(() => {});
  }
}
