/**
 * A self-signed certificate for 127.0.0.1, made at test time with the openssl command line (test-only:
 * a P-256 key, valid one day, in the test's tmp dir). Returns null if openssl is not installed: the
 * caller skips and says so.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers.js';

type Cleanup = Parameters<typeof tmpDir>[0];

export interface TestCert {
  keyPath: string;
  certPath: string;
  /** The private key (PEM): with `cert`, the options of a TLS server. */
  key: string;
  /** The certificate (PEM): pass it as `ca` so the client trusts it. */
  cert: string;
}

export function selfSignedCert(t: Cleanup): TestCert | null {
  const dir = tmpDir(t);
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  const r = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') return null;
  if (r.status !== 0) throw new Error(`openssl req failed (${r.status}): ${r.stderr}`);
  return { keyPath, certPath, key: fs.readFileSync(keyPath, 'utf8'), cert: fs.readFileSync(certPath, 'utf8') };
}

/** The https example's stdout line once serving: group 1 is the port. */
export const HTTPS_SERVING = (generation: number) =>
  new RegExp(`generation ${generation} serving on https://127\\.0\\.0\\.1:(\\d+)`);
