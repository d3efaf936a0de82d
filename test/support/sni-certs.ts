/**
 * Certificates for the SNI tests, made with the openssl command line: ECDSA
 * and RSA leaves with chosen names, a CN-only one, and a root -> intermediate
 * -> leaf chain. Plus an s_client wrapper that returns the certificate the
 * server presented.
 */
import { X509Certificate, webcrypto } from 'node:crypto';
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { reapOnExit, run } from './run-process.js';
import { loadX509 } from '../../src/tls/self-signed.js';

export interface Pair {
  certFile: string;
  keyFile: string;
}

async function openssl(args: string[]): Promise<void> {
  const r = await run('openssl', args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.signal ?? r.code}):\n${r.stderr}`);
}

const keyArgs = (type: 'ec' | 'rsa'): string[] => (type === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048']);

/** A self-signed leaf: SAN DNS names when given, else only the subject CN. */
export async function makeLeaf(dir: string, file: string, type: 'ec' | 'rsa', cn: string, dnsNames: string[] | null): Promise<Pair> {
  const certFile = path.join(dir, `${file}.crt`);
  const keyFile = path.join(dir, `${file}.key`);
  const san = dnsNames ? ['-addext', `subjectAltName=${dnsNames.map((n) => `DNS:${n}`).join(',')}`] : [];
  await openssl(['req', '-x509', ...keyArgs(type), '-nodes', '-sha256', '-days', '2', '-subj', `/CN=${cn}`, ...san, '-keyout', keyFile, '-out', certFile]);
  return { certFile, keyFile };
}

/** root -> intermediate -> leaf (EC); certFile holds leaf + intermediate; `root` is the trust anchor; `reversed` has them the wrong way round. */
export async function makeChain(dir: string, name: string): Promise<Pair & { root: string; reversed: string }> {
  const p = (f: string): string => path.join(dir, f);
  fs.writeFileSync(p('ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  fs.writeFileSync(p('leaf.ext'), `basicConstraints=CA:FALSE\nsubjectAltName=DNS:${name}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n`);
  await openssl(['req', '-x509', ...keyArgs('ec'), '-nodes', '-sha256', '-days', '2', '-subj', '/CN=Aludel Test Root', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', p('root.key'), '-out', p('root.crt')]);
  await openssl(['req', '-new', ...keyArgs('ec'), '-nodes', '-subj', '/CN=Aludel Test Intermediate', '-keyout', p('inter.key'), '-out', p('inter.csr')]);
  await openssl(['x509', '-req', '-in', p('inter.csr'), '-CA', p('root.crt'), '-CAkey', p('root.key'), '-set_serial', '2', '-days', '2', '-sha256', '-extfile', p('ca.ext'), '-out', p('inter.crt')]);
  await openssl(['req', '-new', ...keyArgs('ec'), '-nodes', '-subj', `/CN=${name}`, '-keyout', p('chain-leaf.key'), '-out', p('chain-leaf.csr')]);
  await openssl(['x509', '-req', '-in', p('chain-leaf.csr'), '-CA', p('inter.crt'), '-CAkey', p('inter.key'), '-set_serial', '3', '-days', '2', '-sha256', '-extfile', p('leaf.ext'), '-out', p('chain-leaf.crt')]);
  const leaf = fs.readFileSync(p('chain-leaf.crt'), 'utf8');
  const inter = fs.readFileSync(p('inter.crt'), 'utf8');
  fs.writeFileSync(p('chain.crt'), leaf + inter);
  fs.writeFileSync(p('chain-reversed.crt'), inter + leaf);
  return { certFile: p('chain.crt'), keyFile: p('chain-leaf.key'), root: p('root.crt'), reversed: p('chain-reversed.crt') };
}

/**
 * A certificate file pair at fixed paths (what --cert/--key name) and two
 * leaves for localhost, `old` installed there: install(next) then a reload
 * is a certificate rotation as an admin does it.
 */
export async function rotatingCert(dir: string): Promise<{ live: Pair; old: Pair; next: Pair; install(pair: Pair): void }> {
  const live = { certFile: path.join(dir, 'live.crt'), keyFile: path.join(dir, 'live.key') };
  const old = await makeLeaf(dir, 'old', 'ec', 'localhost', ['localhost']);
  const next = await makeLeaf(dir, 'new', 'ec', 'localhost', ['localhost']);
  const install = (pair: Pair): void => {
    fs.copyFileSync(pair.certFile, live.certFile);
    fs.copyFileSync(pair.keyFile, live.keyFile);
  };
  install(old);
  return { live, old, next, install };
}

/**
 * A self-signed ECDSA leaf for `name` valid only from notBefore to notAfter
 * (openssl req cannot date a certificate in the past), the key file written
 * with `keyMode`.
 */
export async function makeDatedLeaf(dir: string, file: string, name: string, notBefore: Date, notAfter: Date, keyMode = 0o600): Promise<Pair> {
  const x509 = await loadX509();
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${name}`,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }])],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const certFile = path.join(dir, `${file}.crt`);
  const keyFile = path.join(dir, `${file}.key`);
  fs.writeFileSync(certFile, cert.toString('pem') + '\n');
  fs.writeFileSync(keyFile, `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`, { mode: keyMode });
  fs.chmodSync(keyFile, keyMode); // the umask may have narrowed the mode given to open(2)
  return { certFile, keyFile };
}

export function fingerprint(certFile: string): string {
  return new X509Certificate(fs.readFileSync(certFile)).fingerprint256;
}

export interface Presented {
  /** The leaf the server sent. */
  leaf: X509Certificate;
  /** Certificates the server sent (leaf + chain). */
  count: number;
  stdout: string;
  code: number;
}

const PEM = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * openssl s_client -showcerts: what the server presented. servername null:
 * -noservername. `input` (default: none, stdin closed at once) is sent after
 * the handshake; a line makes s_client wait for the responder's answer, and so
 * for TLS 1.3 session tickets too.
 */
export async function presented(port: number, servername: string | null, extra: string[] = [], input = ''): Promise<Presented> {
  const r = await sClient(port, servername, extra, input);
  if (r.pems.length === 0) throw new Error(`s_client got no certificate (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return { leaf: new X509Certificate(r.pems[0]!), count: r.pems.length, stdout: r.stdout, code: r.code };
}

/** The same, for handshakes that may present no certificate (a resumed session). */
export async function sClient(port: number, servername: string | null, extra: string[] = [], input = ''): Promise<{ stdout: string; stderr: string; code: number; pems: string[] }> {
  const sni = servername === null ? ['-noservername'] : ['-servername', servername];
  const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-showcerts', ...sni, ...extra], { input, timeoutMs: 30_000 });
  const stdout = r.stdout.toString('latin1');
  return { stdout, stderr: r.stderr, code: r.code, pems: stdout.match(PEM) ?? [] };
}

const here = path.dirname(fileURLToPath(import.meta.url));

export interface SniServer {
  child: ChildProcess;
  port: number;
  engine: string;
  ktls: boolean;
  conns: Array<{ id: number; tls: Record<string, unknown> }>;
  reconfigure(options: Record<string, unknown>): Promise<{ message: string; code: string | null } | undefined>;
  stop(): Promise<void>;
}

/** Starts test/support/sni-server.js; rejects with the start-up error's message when createKtlsServer throws. */
export function startSniServer(options: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<SniServer> {
  const child = reapOnExit(fork(path.join(here, 'sni-server.js'), [JSON.stringify(options)], { env: { ...process.env, ...env }, execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'pipe', 'ipc'] }));
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const conns: SniServer['conns'] = [];
  let pending: ((e: { message: string; code: string | null } | undefined) => void) | null = null;
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`sni-server exited (${code}) before it was ready:\n${stderr}`)));
    child.on('message', (m: { type: string; port?: number; engine?: string; ktls?: boolean; message?: string; code?: string | null; id?: number; tls?: Record<string, unknown>; error?: { message: string; code: string | null } }) => {
      if (m.type === 'error') reject(Object.assign(new Error(m.message), { code: m.code }));
      if (m.type === 'conn') conns.push({ id: m.id!, tls: m.tls! });
      if (m.type === 'reconfigured') {
        const p = pending;
        pending = null;
        p?.(m.error);
      }
      if (m.type === 'ready') {
        resolve({
          child,
          port: m.port!,
          engine: m.engine!,
          ktls: m.ktls!,
          conns,
          reconfigure: (o) =>
            new Promise((res) => {
              pending = res;
              child.send({ type: 'reconfigure', options: o });
            }),
          stop: () =>
            new Promise((res) => {
              if (child.exitCode !== null) return res();
              child.once('exit', () => res());
              child.send({ type: 'close' });
              setTimeout(() => child.kill('SIGKILL'), 5000).unref();
            }),
        });
      }
    });
  });
}
