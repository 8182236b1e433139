/**
 * Secret redaction for logged bodies: every configured secret (provider keys, Entra
 * client secrets, virtual keys) and the values of credential-looking JSON fields are
 * replaced. Built once per config load.
 */
import type { RuntimeConfig } from '../../config/runtime.ts';
import { PROVIDER_IDS } from '../../config/schema.ts';

const SECRET_FIELD = /("(?:api[_-]?key|x-api-key|authorization|access_token|refresh_token|client_secret|private_key|password|secret|token)"\s*:\s*")((?:[^"\\]|\\.)*)(")/gi;

export function configuredSecrets(config: RuntimeConfig): string[] {
  const secrets: string[] = [];
  for (const id of PROVIDER_IDS) for (const k of config.providers[id].keys.keys) if (k.value) secrets.push(k.value);
  for (const k of config.source.providers.azure?.keys ?? []) if (k.azure_key_config?.client_secret) secrets.push(k.azure_key_config.client_secret);
  for (const vk of config.source.governance?.virtual_keys ?? []) secrets.push(vk.value);
  return secrets.filter((s) => s.length >= 4);
}

export function redactor(config: RuntimeConfig): (text: string) => string {
  const secrets = configuredSecrets(config);
  return (text) => {
    let out = text.replace(SECRET_FIELD, '$1[REDACTED]$3');
    for (const s of secrets) if (out.includes(s)) out = out.replaceAll(s, '[REDACTED]');
    return out;
  };
}
