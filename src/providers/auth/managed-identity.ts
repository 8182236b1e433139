/**
 * Microsoft Entra ID access tokens for the host's managed identity
 * (`azure_key_config: { managed_identity: true }`, or `{ managed_identity: { client_id } }`
 * for a user-assigned one), from whichever source the host provides, found as Azure's own
 * ManagedIdentityCredential finds it (below).
 */
import { DEFAULT_AUTHORITY_HOST, tokenEndpoint } from './entra.ts';
import { OAuthTokenCache } from './token-cache.ts';

/** Azure's instance metadata service, reachable from inside VMs and scale sets only. */
const IMDS_HOST = 'http://169.254.169.254';

/** The variables that choose a managed identity's token source. */
export const MANAGED_IDENTITY_ENV = [
  'AZURE_FEDERATED_TOKEN_FILE',
  'AZURE_TENANT_ID',
  'AZURE_CLIENT_ID',
  'AZURE_AUTHORITY_HOST',
  'IDENTITY_ENDPOINT',
  'IDENTITY_HEADER',
  'AZURE_POD_IDENTITY_AUTHORITY_HOST',
] as const;

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
export function managedIdentityTokenSource(
  clientId: string | undefined,
  scopes: readonly string[],
  env: Record<string, string | undefined>,
): OAuthTokenCache {
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
  const query = (version: string) =>
    `api-version=${version}&resource=${encodeURIComponent(resource)}${clientId ? `&client_id=${encodeURIComponent(clientId)}` : ''}`;
  if (env.IDENTITY_ENDPOINT && env.IDENTITY_HEADER) {
    const headers = { 'x-identity-header': env.IDENTITY_HEADER };
    const url = `${env.IDENTITY_ENDPOINT}${env.IDENTITY_ENDPOINT.includes('?') ? '&' : '?'}${query('2019-08-01')}`;
    return new OAuthTokenCache(url, () => ({ headers }));
  }
  const host = (env.AZURE_POD_IDENTITY_AUTHORITY_HOST || IMDS_HOST).replace(/\/+$/, '');
  return new OAuthTokenCache(`${host}/metadata/identity/oauth2/token?${query('2018-02-01')}`, () => ({
    headers: { metadata: 'true' },
  }));
}

async function readTokenFile(file: string): Promise<string> {
  try {
    return await Bun.file(file).text();
  } catch (err) {
    throw new Error(
      `workload identity token file ${file} could not be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}
