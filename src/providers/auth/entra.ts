/**
 * Microsoft Entra ID (Azure AD) access tokens for a service principal
 * (`azure_key_config: { client_id, client_secret, tenant_id }`, Bifrost's fields): the
 * OAuth 2.0 client credentials grant at `{authority_host}/{tenant_id}/oauth2/v2.0/token`
 * (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
 * Tokens are for the Cognitive Services scope by default. Managed identities:
 * managed-identity.ts.
 */
import { OAuthTokenCache } from './token-cache.ts';

/** Azure OpenAI and AI Foundry accept tokens for this resource. */
export const DEFAULT_ENTRA_SCOPES = ['https://cognitiveservices.azure.com/.default'];
/** The public cloud's; sovereign clouds have their own (login.microsoftonline.us, ...). */
export const DEFAULT_AUTHORITY_HOST = 'https://login.microsoftonline.com';

export interface EntraCredentials {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  scopes: readonly string[];
  authorityHost: string;
}

export function entraTokenSource(c: EntraCredentials): OAuthTokenCache {
  const form = {
    grant_type: 'client_credentials',
    client_id: c.clientId,
    client_secret: c.clientSecret,
    scope: c.scopes.join(' '),
  };
  return new OAuthTokenCache(tokenEndpoint(c.authorityHost, c.tenantId), () => ({ form }));
}

export function tokenEndpoint(authorityHost: string, tenantId: string): string {
  return `${authorityHost.replace(/\/+$/, '')}/${encodeURIComponent(tenantId)}/oauth2/v2.0/token`;
}
