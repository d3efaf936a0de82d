/**
 * --workers N (issue 17), on the real CLI with real clients: the default
 * (auto) runs one worker per CPU this process may use, the workers share
 * the listening socket (requests land on both, counted by the log's pid
 * field), a worker killed with -9 costs only its own connections and is
 * restarted, HUP reloads every worker, TLS sessions resume on another worker
 * (the primary's ticket keys, RFC 5077 / RFC 8446 §4.6.1) and across separate
 * processes given the same --ticket-keys file, the primary's admin listener
 * sums the workers' counters, and TERM (or the primary's death) leaves no
 * worker behind. With --reuse-port each worker has a socket of its own, and
 * the queue of a dead worker's socket waits for its replacement.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { CLI, runCli, serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { FIRST_LISTEN_FD, WORKER_ENV, WORKER_FDS_ENV } from '../../src/cli/worker-protocol.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { freePort } from '../support/loopback-port.js';
import { scrape, select, status, total } from '../support/metrics.js';
import { run } from '../support/run-process.js';
import { fingerprint, makeDatedLeaf, presented, rotatingCert } from '../support/sni-certs.js';
import { delay, waitUntil } from '../support/wait.js';
import { USR2_IGNORED } from '../../src/cli/signals.js';

const FILES = { small: { name: 'small.bin', size: 1000 }, big: { name: 'big-8m.bin', size: 8 * 1024 * 1024 } };
let fx: Fixtures<keyof typeof FILES>;

before(async () => {
  fx = await makeFixtures(FILES);
});
after(() => fx?.cleanup());

/** The worker pids, from the primary's ready line. */
async function workerPids(p: Running): Promise<number[]> {
  const line = await p.waitForLog((l) => Array.isArray(l.workerPids));
  return line.workerPids as number[];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A TLS connection that completed its handshake and sends nothing. */
function idleTls(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fx.certPem, ALPNProtocols: ['http/1.1'] }, () => resolve(s));
    s.once('error', reject);
  });
}

const pidsOf = (lines: LogLine[]): Set<number> => new Set(lines.map((l) => l.pid as number));
const since = (p: Running, from: number, msg: string): LogLine[] => p.logs.slice(from).filter((l) => l.msg === msg);

/**
 * `openssl s_client` GET saving the session (-sess_out) or offering it
 * (-sess_in, whose stdout says "Reused" or "New"). -sess_out runs -quiet,
 * which reads until the server closes: TLS 1.3 tickets come after the
 * handshake (RFC 8446 §4.6.1), and s_client would otherwise leave first.
 */
async function sessionGet(port: number, version: '-tls1_2' | '-tls1_3', sess: string, mode: '-sess_out' | '-sess_in'): Promise<string> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', fx.certFile, version, mode, sess, ...(mode === '-sess_out' ? ['-quiet'] : [])];
  const r = await run('openssl', args, { input: `GET /${FILES.small.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, timeoutMs: 20_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.toString('latin1');
}

describe('--workers auto, the default', () => {
  test('aludel serve without --workers runs os.availableParallelism() workers behind a primary (one process on a 1-CPU host) and serves', { timeout: 60_000 }, async () => {
    const cpus = os.availableParallelism();
    // workers: null: no --workers flag at all (the helper adds --workers 1 otherwise).
    const p = await startAludel(serveArgs(fx, '--admin', '127.0.0.1:0'), { workers: null, startTimeoutMs: 30_000 });
    try {
      const ready = await p.waitForLog((l) => l.msg === 'serving files over HTTPS');
      const admin = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
      const st = (await status(admin)) as unknown as { pid: number; workers?: number[] };
      let servers: number[];
      if (cpus > 1) {
        assert.ok(p.logs.some((l) => l.msg === `primary: ${cpus} workers share ${String(ready.listen)}` && l.workers === cpus && l.pid === p.child.pid), 'the primary says how many workers');
        assert.equal(ready.pid, p.child.pid, 'the process started is the primary');
        assert.equal(ready.workers, cpus);
        servers = ready.workerPids as number[];
        assert.equal(servers.length, cpus);
        assert.ok(!servers.includes(p.child.pid!));
        assert.equal(st.pid, p.child.pid, '/status is the primary\'s');
        assert.deepEqual([...st.workers!].sort(), [...servers].sort(), '/status lists every worker');
        assert.equal(total((await scrape(admin)).samples, 'aludel_workers'), cpus);
      } else {
        assert.equal(ready.pid, p.child.pid, 'one process: the process started serves');
        assert.equal(p.logs.some((l) => l.msg === 'worker started' || l.workerPids !== undefined), false, 'no primary, no worker lines');
        assert.equal(st.workers, undefined, 'one process\'s /status has no workers');
        servers = [p.child.pid!];
      }
      const from = p.mark();
      const r = await curl(['--cacert', fx.certFile, `https://localhost:${p.port}/${FILES.small.name}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), fx.files.small.sha256);
      const line = await p.waitForLog((l) => l.msg === 'request' && l.url === `/${FILES.small.name}`, 5000, from);
      assert.equal(line.status, 200);
      assert.ok(servers.includes(line.pid as number), `served by ${cpus > 1 ? 'a worker' : 'the one process'} (pid ${String(line.pid)})`);
      assert.equal(await p.stop(), 0, 'TERM stops it cleanly');
      for (const pid of servers) assert.equal(alive(pid), false, `pid ${pid} has exited`);
    } finally {
      await p.stop();
    }
  });
});

describe('--workers 2 (serve)', () => {
  test('--workers 1 is one process as before: no primary, no worker lines', { timeout: 30_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '1'));
    try {
      const ready = await p.waitForLog((l) => l.msg === 'serving files over HTTPS');
      assert.equal(ready.pid, p.child.pid, 'the process started serves');
      assert.equal(p.logs.some((l) => l.msg === 'worker started' || l.workerPids !== undefined), false);
    } finally {
      await p.stop();
    }
  });

  test('1,000 short requests over 50 connections land on both workers; the primary\'s /metrics sums them', { timeout: 120_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '2', '--admin', '127.0.0.1:0'));
    try {
      const pids = await workerPids(p);
      assert.equal(pids.length, 2);
      const admin = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
      const from = p.mark();
      const urls = Array.from({ length: 1000 }, () => `https://localhost:${p.port}/${FILES.small.name}`);
      const r = await curl(['--cacert', fx.certFile, '--parallel', '--parallel-max', '50', '-w', '%{http_code}\\n', '-o', '/dev/null', ...urls.flatMap((u, i) => (i === 0 ? [u] : ['-o', '/dev/null', u]))], 100_000);
      assert.equal(r.code, 0, r.stderr);
      const codes = r.stdout.toString().trim().split('\n');
      assert.equal(codes.length, 1000);
      assert.ok(codes.every((c) => c === '200'), 'every request answered 200');
      await waitUntil(() => since(p, from, 'request').length === 1000, 20_000);
      const requests = since(p, from, 'request');
      const connections = since(p, from, 'TLS established');
      for (const pid of pids) {
        assert.ok(requests.some((l) => l.pid === pid), `worker ${pid} served requests`);
        assert.ok(connections.some((l) => l.pid === pid), `worker ${pid} accepted connections`);
      }
      assert.deepEqual([...pidsOf(requests)].sort(), [...pids].sort(), 'only the workers serve; the primary accepts nothing');
      assert.ok(connections.length <= 100, `keep-alive: ${connections.length} connections for 1,000 requests (curl keeps at most 50 busy)`);
      const m = await scrape(admin);
      assert.equal(total(m.samples, 'aludel_connections_total'), connections.length, 'the admin listener sums the workers\' counters');
      assert.equal(total(m.samples, 'aludel_workers'), 2);
      // Per worker: open connections with the worker's pid as a label, beside the sum.
      const idle = await Promise.all(Array.from({ length: 6 }, () => idleTls(p.port)));
      try {
        let samples = (await scrape(admin)).samples;
        for (let i = 0; i < 50 && total(samples, 'aludel_connections_open') !== 6; i++) samples = (await delay(200), await scrape(admin)).samples;
        assert.equal(total(samples, 'aludel_connections_open'), 6);
        const per = select(samples, 'aludel_worker_connections_open');
        assert.deepEqual(per.map((s) => Number(s.labels.pid)).sort(), [...pids].sort(), 'one series per worker, labelled with its pid');
        assert.equal(per.reduce((n, s) => n + s.value, 0), 6, 'the series add up to the open connections');
      } finally {
        for (const s of idle) s.destroy();
      }
    } finally {
      await p.stop();
    }
  });

  test('kill -9 of one worker during downloads: only its connections fail, the others complete intact, and it is restarted', { timeout: 120_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '2'));
    try {
      const pids = await workerPids(p);
      const from = p.mark();
      const downloads: Array<Promise<Awaited<ReturnType<typeof curl>>>> = [];
      // One download at a time until both workers hold at least one (the kernel picks the worker).
      for (let i = 0; i < 10 && pidsOf(since(p, from, 'TLS established')).size < 2; i++) {
        downloads.push(curl(['--cacert', fx.certFile, '--limit-rate', '1M', `https://localhost:${p.port}/${FILES.big.name}`], 60_000));
        await waitUntil(() => since(p, from, 'TLS established').length === downloads.length, 10_000);
      }
      const byPid = since(p, from, 'TLS established');
      assert.equal(pidsOf(byPid).size, 2, 'both workers hold a download');
      const victim = pids[0]!;
      const onVictim = byPid.filter((l) => l.pid === victim).length;
      const mark = p.mark();
      process.kill(victim, 'SIGKILL');
      const results = await Promise.all(downloads);
      const ok = results.filter((r) => r.code === 0);
      assert.equal(results.length - ok.length, onVictim, 'exactly the killed worker\'s downloads failed');
      for (const r of ok) assert.equal(sha256(r.stdout), fx.files.big.sha256, 'the other worker\'s downloads are intact');
      const died = await p.waitForLog((l) => l.workerPid === victim && l.signal === 'SIGKILL', 10_000, mark);
      assert.match(died.msg, /worker killed by SIGKILL; restarting it in \d+ ms/);
      // A HUP while the replacement starts neither kills it nor is lost: it reloads once ready.
      const started = await p.waitForLog((l) => l.msg === 'worker started' && l.worker === died.worker, 10_000, mark);
      p.child.kill('SIGHUP');
      const back = await p.waitForLog((l) => l.msg === 'worker ready' && l.worker === died.worker, 20_000, mark);
      assert.equal(back.workerPid, started.workerPid);
      await p.waitForLog((l) => l.pid === started.workerPid && String(l.msg).startsWith('reloaded:'), 20_000, mark);
      assert.equal(p.logs.slice(mark).filter((l) => l.level === 50 && l.workerPid !== undefined).length, 1, 'one death: the kill -9, not the HUP');
      const after = await curl(['--cacert', fx.certFile, `https://localhost:${p.port}/${FILES.small.name}`]);
      assert.equal(sha256(after.stdout), fx.files.small.sha256);
    } finally {
      await p.stop();
    }
  });

  test('SIGHUP reloads every worker: a new certificate on new connections to both', { timeout: 90_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.outDir, 'hup-'));
    const { live, next, install } = await rotatingCert(dir);
    const p = await startAludel(['serve', '--listen', '127.0.0.1:0', '--cert', live.certFile, '--key', live.keyFile, '--root', fx.root, '--workers', '2']);
    try {
      const pids = await workerPids(p);
      install(next);
      const from = p.mark();
      p.child.kill('SIGHUP');
      await waitUntil(() => pidsOf(since(p, from, 'reloaded: new connections use the new settings; connections in flight finish on the old ones')).size === 2, 20_000);
      assert.deepEqual([...pidsOf(since(p, from, 'reloaded: new connections use the new settings; connections in flight finish on the old ones'))].sort(), [...pids].sort());
      const mark = p.mark();
      for (let i = 0; i < 30 && pidsOf(since(p, mark, 'TLS established')).size < 2; i++) {
        assert.equal((await presented(p.port, 'localhost')).leaf.fingerprint256, fingerprint(next.certFile), 'every new handshake presents the new certificate');
        await waitUntil(() => since(p, mark, 'TLS established').length > i, 5_000);
      }
      assert.equal(pidsOf(since(p, mark, 'TLS established')).size, 2, 'both workers were asked');
    } finally {
      await p.stop();
    }
  });

  test('a warning about the certificate, key or ticket-key files is logged once per load, not once per worker and address', { timeout: 90_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.outDir, 'warn-once-'));
    const now = Date.now();
    const day = 24 * 60 * 60 * 1000;
    const expired = await makeDatedLeaf(dir, 'expired', 'localhost', new Date(now - 30 * day), new Date(now - day), 0o644);
    const ticketKey = path.join(dir, 'ticket.key');
    fs.writeFileSync(ticketKey, Buffer.alloc(80, 7), { mode: 0o644 });
    fs.chmodSync(ticketKey, 0o644);
    const p = await startAludel(['serve', '--listen', '127.0.0.1:0', '--listen', '127.0.0.1:0', '--cert', expired.certFile, '--key', expired.keyFile,
      '--ticket-keys', ticketKey, '--root', fx.root, '--workers', '2']);
    try {
      await workerPids(p);
      const about = (from: number): string[] => p.logs.slice(from).filter((l) => l.level === 40 && (l.certFile === expired.certFile || l.keyFile === expired.keyFile || l.file === ticketKey)).map((l) => l.msg).sort();
      const once = [
        '--ticket-keys: the key file is readable by group or other users; whoever reads it can decrypt resumed sessions: chmod 600 it',
        'certificate expired: clients that verify it refuse the handshake; renew it and reload (SIGHUP)',
        'the private key file is readable by group or other users; whoever reads it can impersonate this server: chmod 600 it',
      ];
      assert.deepEqual(about(0), once, 'at start-up: each once, though 2 workers each load them for 2 addresses');
      const from = p.mark();
      p.child.kill('SIGHUP');
      await waitUntil(() => pidsOf(since(p, from, 'reloaded: new connections use the new settings; connections in flight finish on the old ones')).size === 2, 20_000);
      await delay(300);
      assert.deepEqual(about(from), once, 'after a reload: each once again');
    } finally {
      await p.stop();
    }
  });

  for (const version of ['-tls1_2', '-tls1_3'] as const) {
    test(`${version}: a session resumes on the other worker (shared ticket keys, RFC 5077 / RFC 8446 §4.6.1)`, { timeout: 90_000 }, async () => {
      const p = await startAludel(serveArgs(fx, '--workers', '2'));
      try {
        await workerPids(p);
        const sess = path.join(fx.outDir, `workers${version}.pem`);
        const from = p.mark();
        await sessionGet(p.port, version, sess, '-sess_out');
        await waitUntil(() => since(p, from, 'TLS established').length === 1, 5_000);
        const first = since(p, from, 'TLS established')[0]!;
        for (let i = 0; i < 30 && !since(p, from, 'TLS established').some((l) => l.pid !== first.pid); i++) {
          assert.match(await sessionGet(p.port, version, sess, '-sess_in'), /^Reused, TLSv1\.[23]/m, 'openssl reports a resumed session');
          await waitUntil(() => since(p, from, 'TLS established').length === i + 2, 5_000);
        }
        const other = since(p, from, 'TLS established').find((l) => l.pid !== first.pid);
        assert.ok(other, 'a connection reached the other worker');
        assert.equal(other.reused, true, 'and resumed the session the first worker made');
      } finally {
        await p.stop();
      }
    });
  }

  test('SIGTERM stops the primary and every worker (exit 0, no orphan); a killed primary takes its workers with it', { timeout: 60_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '2'));
    const pids = await workerPids(p);
    assert.equal(await p.stop(), 0);
    await waitUntil(() => pids.every((pid) => !alive(pid)), 10_000);
    assert.ok(p.logs.some((l) => l.msg === 'stopped: every worker has exited' && l.pid === p.child.pid));

    const q = await startAludel(serveArgs(fx, '--workers', '2'));
    const qPids = await workerPids(q);
    q.child.kill('SIGKILL');
    // Each worker sees its IPC channel close and stops as on TERM.
    await waitUntil(() => qPids.every((pid) => !alive(pid)), 20_000);
  });

  test('a worker whose primary is gone before it attaches (its IPC channel closed while it starts) says so and exits 0, no unhandled ERR_IPC_CHANNEL_CLOSED', { timeout: 30_000 }, async () => {
    // The primary's side of fork(), then the primary's death: the channel closes long before the worker, still loading, sends its hello.
    const socket = net.createServer();
    await new Promise<void>((resolve) => socket.listen(0, '127.0.0.1', resolve));
    let child: ChildProcess | null = null;
    try {
      const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
      child = spawn(process.execPath, [CLI, ...serveArgs(fx, '--workers', '2')], {
        env: { ...process.env, [WORKER_ENV]: '1', [WORKER_FDS_ENV]: String(FIRST_LISTEN_FD) },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc', fd],
      });
      child.disconnect();
      let out = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const exited = child;
      const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => exited.once('exit', (c, sig) => resolve([c, sig])));
      assert.doesNotMatch(err, /ERR_IPC_CHANNEL_CLOSED|Unhandled/, err);
      assert.deepEqual([code, signal], [0, null], err);
      const lines = out.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as LogLine);
      assert.deepEqual(lines.filter((l) => l.level >= 40).map((l) => l.msg), ['the primary is gone: stopping this worker gracefully']);
      assert.equal(lines.some((l) => l.msg === 'worker listening'), false, 'it never accepted');
    } finally {
      if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      socket.close();
    }
  });

  test('a worker that fails at start-up fails the start (exit 2, its error shown), as one process would', { timeout: 60_000 }, async () => {
    // An access log in a directory that does not exist: each worker opens it (the primary does not), so the worker fails.
    const log = path.join(fx.outDir, 'no-such-dir', 'access.log');
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--root', fx.root, '--access-log', log, '--workers', '2'], undefined, 30_000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no-such-dir\/access\.log/, 'the worker\'s error names the file');
    assert.match(r.stdout, /a worker failed to start \(its error is above\): stopping/);
  });

  test('a certificate that does not load is refused by the primary before any worker starts (exit 2, the file named)', { timeout: 60_000 }, async () => {
    const bad = path.join(fx.outDir, 'not-a-cert.pem');
    fs.writeFileSync(bad, 'pem\n');
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--cert', bad, '--key', fx.keyFile, '--root', fx.root, '--workers', '2'], undefined, 30_000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^aludel: .*not-a-cert\.pem/);
    assert.doesNotMatch(r.stdout, /worker started/);
  });

  test('SIGUSR1 reaches the workers (access logs reopened) and opens no inspector anywhere', { timeout: 30_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '2'), { env: { NODE_OPTIONS: '--inspect-port=0' } });
    try {
      const pids = await workerPids(p);
      const from = p.mark();
      p.child.kill('SIGUSR1');
      await waitUntil(() => pids.every((pid) => since(p, from, 'reopening the access log (the Node inspector stays off)').some((l) => l.pid === pid)), 10_000);
      assert.doesNotMatch(p.stderr(), /Debugger listening/);
    } finally {
      await p.stop();
    }
  });

  test('SIGUSR2 to the primary and to a worker: each ignores it with a warn line and keeps serving (its default action would end it)', { timeout: 30_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '2'));
    try {
      const pids = await workerPids(p);
      const from = p.mark();
      p.child.kill('SIGUSR2');
      process.kill(pids[0]!, 'SIGUSR2');
      const ignored = (pid: number): boolean => since(p, from, USR2_IGNORED).some((l) => l.pid === pid && l.level === 40);
      await waitUntil(() => ignored(p.child.pid!) && ignored(pids[0]!), 10_000);
      assert.ok(alive(p.child.pid!) && pids.every(alive), 'the primary and both workers still run');
      assert.deepEqual(p.logs.slice(from).filter((l) => l.workerPid !== undefined && l.signal === 'SIGUSR2'), [], 'no worker exit by SIGUSR2');
      const codes = await burst(p.port, 16);
      assert.deepEqual(codes, Array(16).fill('200'));
    } finally {
      assert.equal(await p.stop(), 0);
    }
  });
});

/** Listening TCP sockets on 127.0.0.1:`port`, from /proc/net/tcp (state 0A is LISTEN). */
function listeningSockets(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return fs.readFileSync('/proc/net/tcp', 'latin1').split('\n').filter((row) => {
    const f = row.trim().split(/\s+/);
    return f[1] === local && f[3] === '0A';
  }).length;
}

/** `n` GETs, each on a new connection, all opened at once. Returns the status codes. */
async function burst(port: number, n: number): Promise<string[]> {
  const url = `https://localhost:${port}/${FILES.small.name}`;
  const args = ['--cacert', fx.certFile, '--parallel', '--parallel-immediate', '--parallel-max', String(n), '-H', 'Connection: close', '-w', '%{http_code}\\n'];
  for (let i = 0; i < n; i++) args.push('-o', '/dev/null', url);
  const r = await curl(args, 60_000);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.toString().trim().split('\n');
}

describe('--workers 2 --reuse-port: a listening socket per worker (nginx\'s reuseport)', () => {
  test('each worker accepts on its own SO_REUSEPORT socket; a burst of 64 connections is spread over both', { timeout: 60_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '2', '--reuse-port'));
    try {
      const pids = await workerPids(p);
      assert.equal(listeningSockets(p.port), 2, 'two listening sockets on the one port (the shared mode has one)');
      assert.ok(p.logs.some((l) => String(l.msg).startsWith('primary: each of 2 workers has its own SO_REUSEPORT socket on')));
      const from = p.mark();
      const codes = await burst(p.port, 64);
      assert.deepEqual(new Set(codes), new Set(['200']));
      await waitUntil(() => since(p, from, 'request').length === 64, 20_000);
      // The kernel hashes each connection's 4-tuple over the group: 64 all on one socket has odds of 2^-63.
      assert.deepEqual([...pidsOf(since(p, from, 'TLS established'))].sort(), [...pids].sort(), 'both workers accepted connections');
    } finally {
      await p.stop();
    }
  });

  test('kill -9 of a worker: connections hashed to its socket wait in the queue the primary keeps, and its replacement answers them', { timeout: 90_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '2', '--reuse-port'));
    try {
      const pids = await workerPids(p);
      const mark = p.mark();
      process.kill(pids[0]!, 'SIGKILL');
      const died = await p.waitForLog((l) => l.workerPid === pids[0] && l.signal === 'SIGKILL', 10_000, mark);
      // Opened while the worker is dead: about half hash to its socket, still listening in the primary.
      const from = p.mark();
      const codes = await burst(p.port, 32);
      assert.deepEqual(new Set(codes), new Set(['200']), 'every connection was answered, none reset');
      const started = await p.waitForLog((l) => l.msg === 'worker started' && l.worker === died.worker, 10_000, mark);
      const served = pidsOf(since(p, from, 'TLS established'));
      assert.ok(served.has(started.workerPid as number), 'the replacement accepted connections queued on the dead worker\'s socket');
      assert.ok(served.has(pids[1]!), 'the other worker kept accepting on its own socket');
      assert.equal(listeningSockets(p.port), 2);
    } finally {
      await p.stop();
    }
  });
});

describe('--workers 2 (proxy, tcp)', () => {
  test('aludel proxy: requests reach the origin through the workers; the primary shows aludel_upstream_up', { timeout: 60_000 }, async () => {
    const origin = http.createServer((req, res) => res.end(`origin saw ${req.url}`));
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const port = (origin.address() as net.AddressInfo).port;
    const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${port}`, '--workers', '2', '--admin', '127.0.0.1:0']);
    try {
      const pids = await workerPids(p);
      const admin = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
      const from = p.mark();
      for (let i = 0; i < 10; i++) {
        const r = await curl(['--cacert', fx.certFile, `https://localhost:${p.port}/n${i}`]);
        assert.equal(r.stdout.toString(), `origin saw /n${i}`);
      }
      await waitUntil(() => since(p, from, 'request').length === 10, 10_000);
      assert.ok([...pidsOf(since(p, from, 'request'))].every((pid) => pids.includes(pid)), 'served by the workers');
      assert.equal(total((await scrape(admin)).samples, 'aludel_upstream_up'), 1, 'up in every worker: the minimum over them is 1');
    } finally {
      await p.stop();
      origin.close();
    }
  });

  test('aludel proxy: the primary\'s /status shows each upstream\'s health across the workers (active checks mark a dead one down in both)', { timeout: 60_000 }, async () => {
    const origin = http.createServer((req, res) => res.end('ok'));
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const live = `http://127.0.0.1:${(origin.address() as net.AddressInfo).port}`;
    const dead = `http://127.0.0.1:${await freePort()}`;
    const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', live, '--to', dead, '--health-check-interval', '1s', '--workers', '2', '--admin', '127.0.0.1:0']);
    try {
      await workerPids(p);
      const admin = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
      const want = [{ url: live, up: true, workersUp: 2, workers: 2 }, { url: dead, up: false, workersUp: 0, workers: 2 }];
      let seen: unknown = null;
      for (let i = 0; i < 75; i++) {
        const st = (await status(admin)) as unknown as { upstreams?: Array<{ url: string }> };
        seen = [...(st.upstreams ?? [])].sort((a, b) => (a.url === live ? -1 : b.url === live ? 1 : 0));
        if (JSON.stringify(seen) === JSON.stringify(want)) break;
        await delay(200);
      }
      assert.deepEqual(seen, want);
    } finally {
      await p.stop();
      origin.close();
    }
  });

  test('aludel tcp: a TLS-wrapped echo through the workers', { timeout: 60_000 }, async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const port = (echo.address() as net.AddressInfo).port;
    const p = await startAludel(['tcp', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `127.0.0.1:${port}`, '--workers', '2']);
    try {
      await workerPids(p);
      const r = await run('openssl', ['s_client', '-quiet', '-connect', `127.0.0.1:${p.port}`, '-servername', 'localhost', '-CAfile', fx.certFile], { input: 'ping through a worker\n', timeoutMs: 20_000 });
      assert.match(r.stdout.toString(), /ping through a worker/);
    } finally {
      await p.stop();
      echo.close();
    }
  });
});

describe('--ticket-keys', () => {
  /** A key file as an admin makes one (openssl rand 80 > FILE; chmod 600). */
  function keyFile(name: string, size: number, mode = 0o600): string {
    const file = path.join(fx.outDir, name);
    fs.writeFileSync(file, Buffer.from(Array.from({ length: size }, (_, i) => (i * 37 + size) & 0xff)), { mode });
    fs.chmodSync(file, mode);
    return file;
  }

  for (const [engine, env] of [['system OpenSSL', {}], ['node:tls fallback', { ALUDEL_LIBSSL: 'libssl-absent.so.3' }]] as const) {
    test(`${engine}: two separate processes with the same 80-byte key file resume each other's sessions; without it, no`, { timeout: 90_000 }, async () => {
      const tag = engine === 'system OpenSSL' ? 'openssl' : 'node';
      const key = keyFile(`shared-${tag}.key`, 80);
      const a = await startAludel(serveArgs(fx, '--ticket-keys', key), { env });
      const b = await startAludel(serveArgs(fx, '--ticket-keys', key), { env });
      const c = await startAludel(serveArgs(fx), { env });
      try {
        assert.equal((await a.waitForLog((l) => l.engine !== undefined)).engine, tag === 'openssl' ? 'system-openssl' : 'node-tls');
        for (const version of ['-tls1_2', '-tls1_3'] as const) {
          const sess = path.join(fx.outDir, `shared${version}-${tag}.pem`);
          await sessionGet(a.port, version, sess, '-sess_out');
          assert.match(await sessionGet(b.port, version, sess, '-sess_in'), /^Reused, TLSv1\.[23]/m, `${version}: another process with the same key resumes`);
          assert.match(await sessionGet(c.port, version, sess, '-sess_in'), /^New, TLSv1\.[23]/m, `${version}: a process without the key does not`);
        }
      } finally {
        await Promise.all([a.stop(), b.stop(), c.stop()]);
      }
    });
  }

  test('system OpenSSL: the first key encrypts, the others still decrypt (a rotated-out key keeps resuming)', { timeout: 60_000 }, async () => {
    const oldKey = keyFile('old.key', 80);
    const newKey = keyFile('new.key', 48);
    const before = await startAludel(serveArgs(fx, '--ticket-keys', oldKey));
    const rotated = await startAludel(serveArgs(fx, '--ticket-keys', newKey, '--ticket-keys', oldKey));
    const dropped = await startAludel(serveArgs(fx, '--ticket-keys', newKey));
    try {
      for (const version of ['-tls1_2', '-tls1_3'] as const) {
        const sess = path.join(fx.outDir, `rotated${version}.pem`);
        await sessionGet(before.port, version, sess, '-sess_out');
        assert.match(await sessionGet(rotated.port, version, sess, '-sess_in'), /^Reused, TLSv1\.[23]/m, `${version}: a ticket under the second key resumes`);
        assert.match(await sessionGet(dropped.port, version, sess, '-sess_in'), /^New, TLSv1\.[23]/m, `${version}: once the old key is gone, it does not`);
      }
    } finally {
      await Promise.all([before.stop(), rotated.stop(), dropped.stop()]);
    }
  });

  test('a key file readable by others is used, with a warning; a 48-byte legacy key works; a wrong size stops start-up with its size', { timeout: 60_000 }, async () => {
    const open = keyFile('open.key', 48, 0o644);
    const p = await startAludel(serveArgs(fx, '--ticket-keys', open));
    try {
      const warn = await p.waitForLog((l) => l.level === 40 && l.file === open);
      assert.match(warn.msg, /readable by group or other users.*chmod 600/);
      const sess = path.join(fx.outDir, 'legacy.pem');
      await sessionGet(p.port, '-tls1_3', sess, '-sess_out');
      assert.match(await sessionGet(p.port, '-tls1_3', sess, '-sess_in'), /^Reused, TLSv1\.3/m);
    } finally {
      await p.stop();
    }
    const bad = keyFile('short.key', 64);
    const r = await runCli(serveArgs(fx, '--ticket-keys', bad));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--ticket-keys: .*short\.key: 64 bytes; a session ticket key file has exactly 80 bytes/);
  });
});
