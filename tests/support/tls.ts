/**
 * A self-signed server certificate made at run time with openssl (installed by
 * scripts/setup-test-deps), valid for 127.0.0.1 and localhost: the gateway's
 * `server.tls`, and the trust anchor its test clients are given (`tls.ca`, or
 * NODE_EXTRA_CA_CERTS for a child process). Nothing is committed.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';

export interface TestCert {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

let serial = 0;

export function makeCert(dir = mkdtempSync(join(tmpdir(), 'skybridge-tls-')), name = `cert-${++serial}`): TestCert {
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}.key`);
  const made = Bun.spawnSync([
    'openssl',
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    `/CN=skybridge test ${name}`,
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  if (made.exitCode !== 0) throw new Error(`openssl failed: ${made.stderr.toString()}`);
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

/** The SHA-256 fingerprint of the certificate a TLS server presents on a new connection to 127.0.0.1:port. */
export function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on('error', reject);
  });
}

/** The SHA-256 fingerprint of a PEM certificate. */
export const fingerprintOf = (cert: string): string => new X509Certificate(cert).fingerprint256;
