/**
 * Signals as nginx and HAProxy admins use them (issue 13), on the real CLI
 * with real clients: TERM drains within --shutdown-timeout, QUIT stops at
 * once, USR1 reopens a rotated access log (and never opens Node's inspector),
 * USR2 is ignored and said so (its default action would end the process),
 * HUP reloads settings from the config file while requests in flight finish
 * on the old ones, and keeps the old settings when the new ones are invalid.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { startSinkOrigin, type SinkOrigin } from '../support/origins.js';
import { run } from '../support/run-process.js';
import { waitUntil } from '../support/wait.js';
import { fingerprint, makeDatedLeaf, makeLeaf, presented, rotatingCert } from '../support/sni-certs.js';
import { ignoredLine, SHRUGGED, USR2_IGNORED } from '../../src/cli/signals.js';

const FILES = { big: { name: 'big-32m.bin', size: 32 * 1024 * 1024 }, huge: { name: 'huge-64m.bin', size: 64 * 1024 * 1024 }, small: { name: 'small.bin', size: 1000 } };
let fx: Fixtures<keyof typeof FILES>;

before(async () => {
  fx = await makeFixtures(FILES);
});
after(() => fx?.cleanup());

const exited = (p: Running): Promise<{ code: number | null; ms: number }> => {
  const t0 = Date.now();
  return new Promise((resolve) => {
    if (p.child.exitCode !== null) resolve({ code: p.child.exitCode, ms: 0 });
    else p.child.once('exit', (code) => resolve({ code, ms: Date.now() - t0 }));
  });
};

function get(port: number, name: string, ...extra: string[]) {
  return curl(['--cacert', fx.certFile, ...extra, `https://localhost:${port}/${name}`], 60_000);
}

/** Whether a TCP connection to the port is accepted. */
function accepts(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

describe('signals', () => {
  test('SIGTERM: new connections refused, a download in flight completes intact, exit 0 within the deadline', async () => {
    const p = await startAludel(serveArgs(fx, '--shutdown-timeout', '20s'));
    const download = get(p.port, FILES.big.name, '--limit-rate', '8M');
    await p.waitForLog((l) => l.msg === 'TLS established');
    await new Promise((r) => setTimeout(r, 1000));
    const gone = exited(p);
    p.child.kill('SIGTERM');
    await p.waitForLog((l) => l.msg.startsWith('stopping:'));
    assert.equal(await accepts(p.port), false, 'the listener is closed');
    const r = await download;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha256(r.stdout), fx.files.big.sha256, 'the download in flight finished with every byte');
    const { code, ms } = await gone;
    assert.equal(code, 0);
    assert.ok(ms < 20_000, `exited ${ms} ms after the signal`);
  });

  test('SIGTERM with a client that stops reading: cut at --shutdown-timeout, logged; SIGQUIT: at once', async () => {
    const p = await startAludel(serveArgs(fx, '--shutdown-timeout', '1s'));
    // A stalled reader: the TLS connection asks for 32 MiB and never reads.
    const { default: tls } = await import('node:tls');
    const s = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', ca: fx.certPem }, () => {
      s.write(`GET /${FILES.big.name} HTTP/1.1\r\nHost: x\r\n\r\n`);
      s.pause();
    });
    s.on('error', () => undefined);
    await p.waitForLog((l) => l.msg === 'TLS established');
    await new Promise((r) => setTimeout(r, 300));
    const gone = exited(p);
    p.child.kill('SIGTERM');
    const { code, ms } = await gone;
    s.destroy();
    assert.equal(code, 0);
    assert.ok(ms >= 900 && ms < 5000, `cut after the 1 s deadline (${ms} ms)`);
    assert.ok(p.logs.some((l) => l.msg.startsWith('shutdown deadline reached')));

    const q = await startAludel(serveArgs(fx, '--shutdown-timeout', '60s'));
    const slow = get(q.port, FILES.big.name, '--limit-rate', '1M');
    await q.waitForLog((l) => l.msg === 'TLS established');
    const quit = exited(q);
    q.child.kill('SIGQUIT');
    const stopped = await quit;
    assert.equal(stopped.code, 0);
    assert.ok(stopped.ms < 3000, `SIGQUIT stops at once (${stopped.ms} ms)`);
    assert.notEqual((await slow).code, 0, 'the download was cut');
  });

  test('SIGUSR1: a rotated access log is reopened, and nothing listens on 9229', async () => {
    const log = path.join(fx.outDir, 'access.log');
    const p = await startAludel(serveArgs(fx, '--access-log', log, '--access-log-format', 'combined'));
    try {
      assert.equal((await get(p.port, FILES.small.name, '-A', 'before-rotation')).code, 0);
      await waitUntil(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('before-rotation'));
      assert.equal(fs.statSync(log).mode & 0o777, 0o640, 'client addresses are not world-readable');
      fs.renameSync(log, `${log}.1`);
      const from = p.mark();
      p.child.kill('SIGUSR1');
      await p.waitForLog((l) => l.msg === 'access log reopened', 5000, from);
      assert.equal((await get(p.port, FILES.small.name, '-A', 'after-rotation', '-e', 'https://ref.example/')).code, 0);
      await waitUntil(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('after-rotation'));
      const line = fs.readFileSync(log, 'utf8').trim();
      assert.match(line, /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/small\.bin HTTP\/1\.1" 200 1000 "https:\/\/ref\.example\/" "after-rotation" rt=\d+\.\d{3} ua=- uht=- id=[0-9a-f]+$/);
      assert.ok(!fs.readFileSync(`${log}.1`, 'utf8').includes('after-rotation'), 'the old file got nothing more');
      await new Promise((r) => setTimeout(r, 300)); // Node's inspector would be listening by now
      const ss = await run('ss', ['-Hltn', 'sport = :9229']);
      assert.equal(ss.stdout.toString().trim(), '', 'no inspector on 9229');
      assert.equal(await accepts(9229), false);
    } finally {
      await p.stop();
    }
  });

  test('--access-log off (nginx access_log off): requests are served, no request line is written, no file named off appears; SIGUSR1 says so', async () => {
    const p = await startAludel(serveArgs(fx, '--access-log', 'off'));
    try {
      const cwd = fs.readlinkSync(`/proc/${p.child.pid}/cwd`);
      const from = p.mark();
      assert.equal((await get(p.port, FILES.small.name)).code, 0);
      p.child.kill('SIGUSR1');
      await p.waitForLog((l) => l.msg === 'access log is off: nothing to reopen', 5000, from);
      assert.equal((await get(p.port, FILES.small.name)).code, 0);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(p.logs.slice(from).filter((l) => l.msg === 'request'), []);
      assert.equal(fs.existsSync(path.join(cwd, 'off')), false);
    } finally {
      await p.stop();
    }
  });

  test('SIGUSR2 (nginx\'s binary upgrade, which Aludel has not): ignored with one warn line naming what the signals do; it keeps serving, and TERM still stops it with 0', async () => {
    const p = await startAludel(serveArgs(fx));
    try {
      assert.equal((await get(p.port, FILES.small.name)).code, 0);
      const from = p.mark();
      p.child.kill('SIGUSR2');
      const line = await p.waitForLog((l) => l.signal === 'SIGUSR2', 5000, from);
      assert.equal(line.level, 40);
      assert.equal(line.msg, USR2_IGNORED);
      assert.match(line.msg, /SIGHUP reloads.*SIGTERM or SIGINT stops gracefully/);
      const r = await get(p.port, FILES.small.name, '-w', '%{http_code}', '-o', '/dev/null');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), '200');
      assert.equal(p.child.exitCode, null);
      assert.equal(p.child.signalCode, null);
      assert.equal(p.logs.slice(from).filter((l) => l.signal === 'SIGUSR2').length, 1, 'one line');
    } finally {
      assert.equal(await p.stop(), 0);
    }
  });

  for (const workers of ['1', '2']) {
    test(`SIGALRM and SIGIO (--workers ${workers}): ignored with one warn line each, as nginx's master catches them; it keeps serving, and TERM still stops it with 0`, async () => {
      const p = await startAludel(serveArgs(fx, '--workers', workers));
      try {
        assert.equal((await get(p.port, FILES.small.name)).code, 0);
        for (const signal of SHRUGGED) {
          const from = p.mark();
          p.child.kill(signal);
          const line = await p.waitForLog((l) => l.signal === signal, 5000, from);
          assert.equal(line.level, 40);
          assert.equal(line.msg, ignoredLine(signal));
          const r = await get(p.port, FILES.small.name, '-w', '%{http_code}', '-o', '/dev/null');
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.toString(), '200', signal);
          assert.equal(p.child.exitCode, null, signal);
          assert.equal(p.child.signalCode, null, signal);
          assert.equal(p.logs.slice(from).filter((l) => l.signal === signal).length, 1, `one line for ${signal}`);
        }
      } finally {
        assert.equal(await p.stop(), 0);
      }
    });
  }

  test('SIGHUP with a new certificate during a 64 MiB download: it completes intact, the next handshake presents the new one; a broken one keeps the old', async () => {
    const dir = fs.mkdtempSync(path.join(fx.outDir, 'rotate-'));
    const { live, old, next, install } = await rotatingCert(dir);
    const p = await startAludel(['serve', '--listen', '127.0.0.1:0', '--cert', live.certFile, '--key', live.keyFile, '--root', fx.root]);
    try {
      assert.equal((await presented(p.port, 'localhost')).leaf.fingerprint256, fingerprint(old.certFile));
      const download = curl(['-k', '--limit-rate', '16M', `https://localhost:${p.port}/${FILES.huge.name}`], 60_000);
      await p.waitForLog((l) => l.msg === 'TLS established', 5000, p.mark() - 1);
      await new Promise((r) => setTimeout(r, 500));
      install(next);
      const from = p.mark();
      p.child.kill('SIGHUP');
      await p.waitForLog((l) => l.msg.startsWith('reloaded'), 10_000, from);
      assert.equal((await presented(p.port, 'localhost')).leaf.fingerprint256, fingerprint(next.certFile), 'the next handshake presents the new certificate');
      const r = await download;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), fx.files.huge.sha256, 'the download in flight finished on the old certificate, every byte');

      fs.writeFileSync(live.certFile, '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n');
      const bad = p.mark();
      p.child.kill('SIGHUP');
      const err = await p.waitForLog((l) => l.msg.startsWith('reload failed'), 10_000, bad);
      assert.match(String(err.detail), new RegExp(live.certFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'the error names the file');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(p.logs.slice(bad).filter((l) => l.level >= 50).length, 1, 'one error line');
      assert.equal((await presented(p.port, 'localhost')).leaf.fingerprint256, fingerprint(next.certFile), 'the previous certificate keeps serving');
    } finally {
      await p.stop();
    }
  });

  test('an expired certificate, a not-yet-valid one and a key file others can read: served as nginx does, with one warning line each, at start-up and after SIGHUP', async () => {
    const dir = fs.mkdtempSync(path.join(fx.outDir, 'dated-'));
    const day = 24 * 60 * 60 * 1000;
    const now = Date.now();
    const expired = await makeDatedLeaf(dir, 'expired', 'localhost', new Date(now - 30 * day), new Date(now - day), 0o644);
    const early = await makeDatedLeaf(dir, 'early', 'localhost', new Date(now + day), new Date(now + 30 * day));
    const live = { certFile: path.join(dir, 'live.crt'), keyFile: path.join(dir, 'live.key') };
    fs.copyFileSync(expired.certFile, live.certFile);
    fs.copyFileSync(expired.keyFile, live.keyFile);
    fs.chmodSync(live.keyFile, 0o644);
    const p = await startAludel(['serve', '--listen', '127.0.0.1:0', '--cert', live.certFile, '--key', live.keyFile, '--root', fx.root]);
    try {
      const warnings = (from: number, to = p.logs.length): LogLine[] => p.logs.slice(from, to).filter((l) => l.level === 40 && (l.certFile === live.certFile || l.keyFile === live.keyFile));
      assert.deepEqual(warnings(0).map((l) => l.msg), [
        'certificate expired: clients that verify it refuse the handshake; renew it and reload (SIGHUP)',
        'the private key file is readable by group or other users; whoever reads it can impersonate this server: chmod 600 it',
      ]);
      assert.equal(warnings(0)[1]!.mode, '0644');
      assert.equal((await presented(p.port, 'localhost')).leaf.fingerprint256, fingerprint(expired.certFile), 'still served: the admin decides');

      fs.copyFileSync(early.certFile, live.certFile);
      fs.copyFileSync(early.keyFile, live.keyFile);
      fs.chmodSync(live.keyFile, 0o600);
      const from = p.mark();
      p.child.kill('SIGHUP');
      await p.waitForLog((l) => l.msg.startsWith('reloaded'), 10_000, from);
      assert.deepEqual(warnings(from).map((l) => l.msg), ['certificate not valid yet: clients that verify it refuse the handshake until its validFrom (or the host clock is wrong)']);
      assert.equal((await presented(p.port, 'localhost')).leaf.fingerprint256, fingerprint(early.certFile));
    } finally {
      await p.stop();
    }
  });

  test('--cert/--key pairs on the command line: chosen by SNI, the first for unknown names', async () => {
    const dir = fs.mkdtempSync(path.join(fx.outDir, 'sni-'));
    const a = await makeLeaf(dir, 'a', 'ec', 'a.test', ['a.test']);
    const w = await makeLeaf(dir, 'w', 'ec', 'w', ['*.w.test']);
    const rsa = await makeLeaf(dir, 'a-rsa', 'rsa', 'a.test', ['a.test']);
    const p = await startAludel(['serve', '--listen', '127.0.0.1:0', '--root', fx.root, '--cert', fx.certFile, '--key', fx.keyFile,
      '--cert', a.certFile, '--key', a.keyFile, '--cert', w.certFile, '--key', w.keyFile, '--cert', rsa.certFile, '--key', rsa.keyFile]);
    try {
      assert.equal((await presented(p.port, 'a.test')).leaf.fingerprint256, fingerprint(a.certFile), 'exact');
      assert.equal((await presented(p.port, 'x.w.test')).leaf.fingerprint256, fingerprint(w.certFile), 'wildcard');
      assert.equal((await presented(p.port, 'unknown.test')).leaf.fingerprint256, fingerprint(fx.certFile), 'default');
      assert.equal((await presented(p.port, 'a.test', ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'])).leaf.fingerprint256, fingerprint(rsa.certFile), 'RSA-only client');
    } finally {
      await p.stop();
    }
  });

  describe('SIGHUP reload (proxy, settings from --config)', () => {
    let a: SinkOrigin;
    let b: SinkOrigin;
    before(async () => {
      a = await startSinkOrigin();
      b = await startSinkOrigin();
    });
    after(async () => {
      await a?.stop();
      await b?.stop();
    });

    test('new connections use the new upstream; a request in flight finishes on the old one; a broken file keeps the old settings', async () => {
      const config = path.join(fx.outDir, 'proxy.yaml');
      const write = (upstream: number): void => fs.writeFileSync(config, `cert: ${fx.certFile}\nkey: ${fx.keyFile}\nlisten: 127.0.0.1:0\nto: http://127.0.0.1:${upstream}\n`);
      write(a.port);
      const p = await startAludel(['proxy', '--config', config]);
      try {
        const echo = (): Promise<string> => curl(['--cacert', fx.certFile, `https://localhost:${p.port}/echo-headers`]).then((r) => r.stdout.toString());
        await echo();
        assert.equal(a.requests.length, 1);
        // In flight across the reload: 300 kB at 100 kB/s from upstream A.
        const slow = curl(['--cacert', fx.certFile, '-H', 'X-Sink-Rate: 100000', `https://localhost:${p.port}/cache?size=300000`]);
        await waitUntil(() => a.requests.length === 2);
        write(b.port);
        const from = p.mark();
        p.child.kill('SIGHUP');
        await p.waitForLog((l) => l.msg.startsWith('reloaded'), 10_000, from);
        await echo();
        assert.equal(b.requests.length, 1, 'the new connection went to the new upstream');
        const r = await slow;
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.length, 300_000, 'the request in flight finished on the old settings');
        assert.equal(a.requests.length, 2);

        fs.writeFileSync(config, 'to: [unclosed\n');
        const bad = p.mark();
        p.child.kill('SIGHUP');
        const err = await p.waitForLog((l) => l.msg.startsWith('reload failed'), 10_000, bad);
        assert.equal(err.level, 50);
        assert.match(String(err.detail), /not valid YAML/);
        await echo();
        assert.equal(b.requests.length, 2, 'still serving with the previous settings');
        assert.equal(p.child.exitCode, null);
      } finally {
        await p.stop();
      }
    });
  });
});
