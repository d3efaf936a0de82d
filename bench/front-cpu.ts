/**
 * A focused measurement: the front end's own CPU (utime and stime apart) per
 * GB of a one-connection download loop (curl, HTTP/1.1, TLS 1.3
 * AES-128-GCM), for chosen fronts in interleaved rounds, with each round's
 * ratio to the first front. Where the kernel has no kTLS, run it in the VM:
 *   ../shared/ktls-vm/run-in-vm -m 4096 -e FRONTS=aludel-cache,nginx-cache -- node dist/bench/front-cpu.js
 * Environment: FRONTS (comma-separated, the first is the base of the ratios),
 * OFFLOAD (kernel|userspace), SIZE (MiB per file, 32), N (downloads per point, 3), ROUNDS (3).
 * `openssl-sendfile` (s_server -WWW -sendfile on kTLS, kernel mode only) is the floor of a sendfile front.
 * BASELINE=DIR (a built checkout) adds `aludel-proxy-base` and `aludel-proxy-tls-base`: that
 * build's proxy, measured in the same rounds (an A/B).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { cliIn, startNginx, startAludel, startOpensslWww, type Offload, type Server } from './servers.js';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fc-'));
const root = path.join(work, 'root'); fs.mkdirSync(root);
const MiB = 1024 * 1024, SIZE = Number(process.env.SIZE ?? 32) * MiB;
const fd = fs.openSync(path.join(root, 'f.bin'), 'w'); const blk = crypto.randomBytes(MiB);
for (let i = 0; i < SIZE / MiB; i++) fs.writeSync(fd, blk); fs.closeSync(fd);
const certFile = path.join(work, 'c.pem'), keyFile = path.join(work, 'k.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
const tls = { certFile, keyFile };
const origin = await startNginx('origin', { dir: path.join(work, 'o'), host: '127.0.0.1', root, role: { kind: 'origin' } });
const originTls = await startNginx('origin-tls', { dir: path.join(work, 'ot'), host: '127.0.0.1', root, role: { kind: 'origin' }, tls: { ...tls, offload: 'userspace' } });
const off = (process.env.OFFLOAD ?? 'kernel') as Offload;
const make: Record<string, () => Promise<Server>> = {
  'aludel-proxy': () => startAludel('ap', { host: '127.0.0.1', tls, offload: off, originPort: origin.port }),
  'aludel-proxy-tls': () => startAludel('apt', { host: '127.0.0.1', tls, offload: off, originPort: originTls.port, originUrl: `https://127.0.0.1:${originTls.port}` }),
  'nginx-proxy': () => startNginx('np', { dir: path.join(work, 'np'), host: '127.0.0.1', root, role: { kind: 'proxy', originPort: origin.port }, tls: { ...tls, offload: off } }),
  'nginx-proxy-tls': () => startNginx('npt', { dir: path.join(work, 'npt'), host: '127.0.0.1', root, role: { kind: 'proxy', originPort: originTls.port, originTls: true }, tls: { ...tls, offload: off } }),
  'aludel-cache': () => startAludel('ac', { host: '127.0.0.1', tls, offload: off, originPort: origin.port, cacheDir: path.join(work, 'ac') }),
  'openssl-sendfile': () => startOpensslWww(path.join(work, 'os'), '127.0.0.1', tls, root),
  'nginx-cache': () => startNginx('nc', { dir: path.join(work, 'nc'), host: '127.0.0.1', root, role: { kind: 'cache', originPort: origin.port }, tls: { ...tls, offload: off } }),
};
const baseline = process.env.BASELINE ? cliIn(path.resolve(process.env.BASELINE)) : null;
if (baseline) {
  make['aludel-proxy-base'] = () => startAludel('apb', { host: '127.0.0.1', tls, offload: off, originPort: origin.port, cli: baseline });
  make['aludel-proxy-tls-base'] = () => startAludel('aptb', { host: '127.0.0.1', tls, offload: off, originPort: originTls.port, originUrl: `https://127.0.0.1:${originTls.port}`, cli: baseline });
}
const names = (process.env.FRONTS ?? 'aludel-proxy,aludel-proxy-tls,nginx-proxy-tls').split(',');
const fronts: Record<string, Server> = {};
for (const n of names) {
  if (!make[n]) throw new Error(`FRONTS: unknown ${n} (known: ${Object.keys(make).join(', ')})`);
  fronts[n] = await make[n]!();
}
const hz = Number(execFileSync('getconf', ['CLK_TCK']).toString());
const cpu = (pid: number): { u: number; s: number } => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { u: Number(f[11]) / hz, s: Number(f[12]) / hz };
};
/** TlsTxSw from /proc/net/tls_stat (0 where the kernel has none): each point must raise it, or it did not run on kTLS. */
const txSw = (): number => { try { return Number(/TlsTxSw\s+(\d+)/.exec(fs.readFileSync('/proc/net/tls_stat', 'utf8'))?.[1] ?? 0); } catch { return 0; } };
const url = (s: Server): string => `https://localhost:${s.port}/f.bin`;
for (const s of Object.values(fronts)) execFileSync('curl', ['-skf', '-o', '/dev/null', url(s)]);
const N = Number(process.env.N ?? 3), ROUNDS = Number(process.env.ROUNDS ?? 3);
const res: Record<string, Array<{ u: number; s: number; sec: number; tx: number }>> = Object.fromEntries(names.map((n) => [n, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, s] of Object.entries(fronts)) {
    const a = cpu(s.pid); const t0 = Date.now(); const tx0 = txSw();
    execFileSync('curl', ['-skf', '--http1.1', '--tls13-ciphers', 'TLS_AES_128_GCM_SHA256', ...Array.from({ length: N }, () => ['-o', '/dev/null', url(s)]).flat()]);
    const b = cpu(s.pid); const gb = (N * SIZE) / 1e9;
    res[name]!.push({ u: (b.u - a.u) / gb, s: (b.s - a.s) / gb, sec: (Date.now() - t0) / 1000, tx: txSw() - tx0 });
  }
}
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const [name, rows] of Object.entries(res)) console.log(name.padEnd(18), rows.map((x) => `u ${x.u.toFixed(0)} s ${x.s.toFixed(0)} = ${(x.u + x.s).toFixed(0)} (${x.sec.toFixed(1)}s ${((N * SIZE) / 1e6 / x.sec).toFixed(1)} MB/s, TlsTxSw +${x.tx})`).join(' | '));
const base = names[0]!;
for (const n of names.slice(1)) console.log(`ratio ${n}/${base} per round:`, res[n]!.map((a, i) => ((a.u + a.s) / (res[base]![i]!.u + res[base]![i]!.s)).toFixed(3)).join(' '), 'median', med(res[n]!.map((a, i) => (a.u + a.s) / (res[base]![i]!.u + res[base]![i]!.s))).toFixed(3));
for (const s of [...Object.values(fronts), origin, originTls]) await s.stop();
fs.rmSync(work, { recursive: true, force: true });
