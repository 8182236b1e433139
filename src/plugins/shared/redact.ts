/**
 * Secret redaction for logged bodies: every configured secret (provider keys, Entra
 * client secrets, virtual keys; RuntimeConfig.secrets) and the values of
 * credential-looking JSON fields are replaced.
 */
import type { RuntimeConfig } from '../../config/runtime.ts';

const SECRET_FIELD =
  /("(?:api[_-]?key|x-api-key|authorization|access_token|refresh_token|client_secret|private_key|password|secret|token)"\s*:\s*")((?:[^"\\]|\\.)*)(")/gi;

export function redactor(config: RuntimeConfig): (text: string) => string {
  const secrets = config.secrets;
  return (text) => {
    let out = text.replace(SECRET_FIELD, '$1[REDACTED]$3');
    for (const s of secrets) if (out.includes(s)) out = out.replaceAll(s, '[REDACTED]');
    return out;
  };
}
