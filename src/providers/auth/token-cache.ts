/**
 * OAuth 2.0 access tokens from a token endpoint (RFC 6749 §4.4 client credentials, or
 * RFC 7523 JWT bearer: the grant is the caller's form), or from an Azure managed
 * identity endpoint (a GET with the host's headers). A token is cached until shortly
 * before its expiry, and concurrent callers share one refresh. Used for Google
 * service accounts, Entra ID service principals and managed identities.
 */

/** Refresh this long before the token's expiry so no request carries a dying token. */
const REFRESH_MARGIN_MS = 5 * 60_000;
const TOKEN_TIMEOUT_MS = 15_000;

export class TokenError extends Error {
  override name = 'TokenError';
}

/** One token request: an OAuth form POSTed to the token URL, or a GET with these headers. */
export type TokenRequest = { form: Record<string, string> } | { headers: Record<string, string> };

/** What an access token comes from, as a key's provider sees it. */
export interface TokenSource {
  getToken(): Promise<string>;
  invalidate(): void;
}

/** A token and when it is to be refreshed (epoch ms): what the primary of a group hands its workers. */
export interface MintedToken {
  value: string;
  refreshAt: number;
}

export class OAuthTokenCache implements TokenSource {
  private token: { value: string; refreshAt: number } | undefined;
  private inflight: Promise<string> | undefined;

  constructor(
    readonly tokenUrl: string,
    /** Builds one token request (the grant and its credentials); called per refresh. */
    private readonly request: () => TokenRequest | Promise<TokenRequest>,
  ) {}

  /**
   * Forget the cached token (the upstream refused it: revoked, or the secret was
   * rotated); with `refused`, only when the cached one is that token (a worker's refusal
   * of a token already replaced costs no new one).
   */
  invalidate(refused?: string): void {
    if (refused === undefined || this.token?.value === refused) this.token = undefined;
  }

  /** A valid token and when it is due for a refresh. */
  async minted(): Promise<MintedToken> {
    const value = await this.getToken();
    return { value, refreshAt: this.token?.value === value ? this.token.refreshAt : Date.now() };
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
    const url = this.tokenUrl;
    let request: TokenRequest;
    try {
      request = await this.request();
    } catch (err) {
      throw new TokenError((err as Error).message);
    }
    const init: RequestInit =
      'form' in request
        ? {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
            body: new URLSearchParams(request.form),
          }
        : { method: 'GET', headers: { accept: 'application/json', ...request.headers } };
    let res: Response;
    try {
      res = await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS) });
    } catch (err) {
      throw new TokenError(`token endpoint ${url} unreachable: ${(err as Error).message}`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      throw new TokenError(`token endpoint ${url} answer could not be read: ${(err as Error).message}`);
    }
    if (!res.ok) throw new TokenError(`token endpoint ${url} answered ${res.status}${describeTokenError(text)}`);
    let body: { access_token?: unknown; expires_in?: unknown; expires_on?: unknown };
    try {
      body = JSON.parse(text);
    } catch {
      throw new TokenError(`token endpoint ${url} answered non-JSON`);
    }
    if (typeof body.access_token !== 'string' || !body.access_token) {
      throw new TokenError(`token endpoint ${url} answered without access_token`);
    }
    // Seconds from now (OAuth), or, from Azure's managed identity endpoints, possibly
    // only `expires_on`: epoch seconds (both may come as strings there).
    const expiresIn =
      body.expires_in !== undefined ? Number(body.expires_in) : Number(body.expires_on) - Date.now() / 1000;
    const expiresInMs = (Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600) * 1000;
    this.token = {
      value: body.access_token,
      refreshAt: Date.now() + Math.max(expiresInMs - REFRESH_MARGIN_MS, expiresInMs / 2),
    };
    return body.access_token;
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
