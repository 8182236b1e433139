/**
 * Microsoft Entra ID (Azure AD) access tokens for an Azure key that authenticates as an
 * identity rather than with an api-key:
 * - a service principal (`azure_key_config: { client_id, client_secret, tenant_id }`,
 *   Bifrost's fields): the OAuth 2.0 client credentials grant at
 *   `{authority_host}/{tenant_id}/oauth2/v2.0/token`
 *   (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow);
 * - a managed identity (`azure_key_config: { managed_identity: true }`, or
 *   `{ managed_identity: { client_id } }` for a user-assigned one): from whichever source
 *   the host provides, found as Azure's own ManagedIdentityCredential finds it (below).
 * Tokens are for the Cognitive Services scope by default.
 */
import { OAuthTokenCache } from './oauth-token.ts';

/** Azure OpenAI and AI Foundry accept tokens for this resource. */
export const DEFAULT_ENTRA_SCOPES = ['https://cognitiveservices.azure.com/.default'];
/** The public cloud's; sovereign clouds have their own (login.microsoftonline.us, ...). */
export const DEFAULT_AUTHORITY_HOST = 'https://login.microsoftonline.com';
/** Azure's instance metadata service, reachable from inside VMs and scale sets only. */
const IMDS_HOST = 'http://169.254.169.254';

export interface EntraCredentials {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  scopes: readonly string[];
  authorityHost: string;
}

export function entraTokenSource(c: EntraCredentials): OAuthTokenCache {
  const form = { grant_type: 'client_credentials', client_id: c.clientId, client_secret: c.clientSecret, scope: c.scopes.join(' ') };
  return new OAuthTokenCache(tokenEndpoint(c.authorityHost, c.tenantId), () => ({ form }));
}

/**
 * A managed identity's token source, chosen from the environment the gateway runs in,
 * in the order Azure's ManagedIdentityCredential tries them:
 * - AKS workload identity (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_TENANT_ID`,
 *   `AZURE_CLIENT_ID`, optional `AZURE_AUTHORITY_HOST`, all set by the workload identity
 *   webhook): the projected Kubernetes token, re-read at each refresh because the kubelet
 *   rotates it, is the client assertion of a client credentials grant;
 * - App Service, Functions, Container Apps (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`):
 *   a GET with `X-IDENTITY-HEADER`, api-version 2019-08-01;
 * - VMs and scale sets: the instance metadata service, a GET with `Metadata: true`,
 *   api-version 2018-02-01 (`AZURE_POD_IDENTITY_AUTHORITY_HOST` moves it, as for
 *   Azure's SDKs).
 * `clientId` picks a user-assigned identity (for workload identity it replaces
 * `AZURE_CLIENT_ID`).
 */
export function managedIdentityTokenSource(clientId: string | undefined, scopes: readonly string[], env: Record<string, string | undefined>): OAuthTokenCache {
  // The GET endpoints take a resource, not a scope.
  const resource = scopes[0]!.replace(/\/\.default$/, '');
  const tokenFile = env.AZURE_FEDERATED_TOKEN_FILE;
  const federatedClientId = clientId ?? env.AZURE_CLIENT_ID;
  if (tokenFile && env.AZURE_TENANT_ID && federatedClientId) {
    const url = tokenEndpoint(env.AZURE_AUTHORITY_HOST || DEFAULT_AUTHORITY_HOST, env.AZURE_TENANT_ID);
    return new OAuthTokenCache(url, async () => ({
      form: {
        grant_type: 'client_credentials',
        client_id: federatedClientId,
        scope: scopes.join(' '),
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: (await readTokenFile(tokenFile)).trim(),
      },
    }));
  }
  const query = (version: string) => `api-version=${version}&resource=${encodeURIComponent(resource)}${clientId ? `&client_id=${encodeURIComponent(clientId)}` : ''}`;
  if (env.IDENTITY_ENDPOINT && env.IDENTITY_HEADER) {
    const headers = { 'x-identity-header': env.IDENTITY_HEADER };
    const url = `${env.IDENTITY_ENDPOINT}${env.IDENTITY_ENDPOINT.includes('?') ? '&' : '?'}${query('2019-08-01')}`;
    return new OAuthTokenCache(url, () => ({ headers }));
  }
  const host = (env.AZURE_POD_IDENTITY_AUTHORITY_HOST || IMDS_HOST).replace(/\/+$/, '');
  return new OAuthTokenCache(`${host}/metadata/identity/oauth2/token?${query('2018-02-01')}`, () => ({ headers: { metadata: 'true' } }));
}

function tokenEndpoint(authorityHost: string, tenantId: string): string {
  return `${authorityHost.replace(/\/+$/, '')}/${encodeURIComponent(tenantId)}/oauth2/v2.0/token`;
}

async function readTokenFile(file: string): Promise<string> {
  try {
    return await Bun.file(file).text();
  } catch (err) {
    throw new Error(`workload identity token file ${file} could not be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
