/**
 * OAuth 2.0 access tokens from a token endpoint (RFC 6749 §4.4 client credentials, or
 * RFC 7523 JWT bearer: the grant is the caller's form). A token is cached until shortly
 * before its expiry, and concurrent callers share one refresh. Used for Vertex service
 * accounts (google-auth.ts) and Azure Entra ID service principals (entra-auth.ts).
 */

/** Refresh this long before the token's expiry so no request carries a dying token. */
const REFRESH_MARGIN_MS = 5 * 60_000;
const TOKEN_TIMEOUT_MS = 15_000;

export class TokenError extends Error {
  override name = 'TokenError';
}

export class OAuthTokenCache {
  private token: { value: string; refreshAt: number } | undefined;
  private inflight: Promise<string> | undefined;

  constructor(
    readonly tokenUrl: string,
    /** The form of one token request (the grant and its credentials); called per refresh. */
    private readonly form: () => Record<string, string> | Promise<Record<string, string>>,
  ) {}

  /** Forget the cached token (the upstream refused it: revoked, or the secret was rotated). */
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
    const url = this.tokenUrl;
    const form = await this.form();
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams(form),
        redirect: 'manual',
        signal: AbortSignal.timeout(TOKEN_TIMEOUT_MS),
      });
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
    let body: { access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(text);
    } catch {
      throw new TokenError(`token endpoint ${url} answered non-JSON`);
    }
    if (typeof body.access_token !== 'string' || !body.access_token) {
      throw new TokenError(`token endpoint ${url} answered without access_token`);
    }
    const expiresIn = Number(body.expires_in);
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
