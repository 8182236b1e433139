/**
 * `server.tls`: the gateway's own certificate and key, read and checked at every load
 * (start, reload, SIGHUP), so a bad one is a config error naming its file and a running
 * gateway keeps serving the certificate it has. Checked: both files readable, the
 * certificate and the key PEM (an encrypted key cannot be used unattended), and the key
 * the certificate's. An expired certificate loads with a warning (clients will refuse it).
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ConfigProblem } from '../../config/problems.ts';
import type { ServerTls } from '../../config/runtime.ts';
import type { Config } from '../../config/schema.ts';

export function readServerTls(
  input: Config['server']['tls'],
  origin: string,
  problems: ConfigProblem[],
  warnings: string[],
  /** Files already read (by a group's primary), by absolute path: used instead of reading them again. */
  files: Readonly<Record<string, string>> = {},
): ServerTls | undefined {
  if (!input) return undefined;
  const problem = (field: string, message: string) =>
    problems.push({ file: origin, path: `server.tls.${field}`, message });
  const certFile = resolve(input.cert_file);
  const keyFile = resolve(input.key_file);
  const cert = files[certFile] ?? readPem(certFile, 'cert_file', problem);
  const key = files[keyFile] ?? readPem(keyFile, 'key_file', problem);
  if (cert === undefined || key === undefined) return undefined;

  let x509: X509Certificate | undefined;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    problem('cert_file', `${certFile}: not a PEM certificate`);
  }
  let privateKey: KeyObject | undefined;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    problem(
      'key_file',
      /passphrase/i.test((err as Error).message)
        ? `${keyFile}: the private key is encrypted; give an unencrypted one (readable by the gateway's user only)`
        : `${keyFile}: not a PEM private key`,
    );
  }
  if (!x509 || !privateKey) return undefined;
  if (!x509.checkPrivateKey(privateKey)) {
    problem('key_file', `${keyFile}: not the private key of the certificate in ${certFile}`);
    return undefined;
  }
  if (Date.parse(x509.validTo) < Date.now())
    warnings.push(`server.tls.cert_file: ${certFile}: the certificate expired on ${x509.validTo}`);
  return { certFile, keyFile, cert, key };
}

function readPem(file: string, field: string, problem: (field: string, message: string) => void): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    problem(field, `${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return undefined;
  }
}
