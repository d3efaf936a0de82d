/**
 * Mistakes an admin makes on the first day, each answered with one line that
 * names the setting, what was wrong and what to do (exit 2), never a raw
 * Node error text or a value that is not the one written.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { spawn } from 'node:child_process';
import { CLI, runCli, serveArgs } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { reapOnExit, run } from '../support/run-process.js';
import { makeRsaCert } from '../support/rsa-cert.js';

let fx: StandardFixtures;
before(async () => {
  fx = await makeFixtures();
});
after(() => fx?.cleanup());

describe('aludel doctor --acme-storage DIR', () => {
  test('a directory that does not exist: one line naming the flag and the directory, exit 2, no scandir text', async () => {
    const missing = path.join(fx.dir, 'no-such-acme');
    const r = await runCli(['doctor', '--acme-storage', missing], {}, 60_000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`--acme-storage ${missing}: no such directory`));
    assert.doesNotMatch(r.stderr, /scandir|ENOENT/);
  });

  test('a file, not a directory: said so, exit 2', async () => {
    const r = await runCli(['doctor', '--acme-storage', fx.certFile], {}, 60_000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--acme-storage .*cert\.pem: not a directory/);
    assert.doesNotMatch(r.stderr, /scandir|ENOTDIR/);
  });

  test('a storage directory with no certificate ordered yet: the host report, and a finding saying none is there yet', async () => {
    const fresh = path.join(fx.dir, 'fresh-acme');
    fs.mkdirSync(fresh, { mode: 0o700 });
    const r = await runCli(['doctor', '--json', '--acme-storage', fresh], {}, 60_000);
    assert.notEqual(r.code, 2, r.stderr);
    const report = JSON.parse(r.stdout) as { acme: unknown[]; findings: { level: string; area: string; what: string }[] };
    assert.deepEqual(report.acme, []);
    const acme = report.findings.filter((f) => f.area === 'acme');
    assert.equal(acme.length, 1);
    assert.equal(acme[0]!.level, 'warn');
    assert.match(acme[0]!.what, /no managed certificate/);
  });
});

describe('a config value that is not a finite number', () => {
  test('1e309 (YAML reads it as infinity) is shown as written, not as "null"', async () => {
    const file = path.join(fx.dir, 'inf.yaml');
    fs.writeFileSync(file, 'idle-timeout: 1e309\nmax-connections: .inf\n');
    const r = await runCli(serveArgs(fx, '--listen', '127.0.0.1:0', '--config', file));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /idle-timeout: .*\(got Infinity\)/);
    assert.match(r.stderr, /max-connections: .*\(got Infinity\)/);
    assert.doesNotMatch(r.stderr, /got null/);
  });
});

describe('aludel scan as a user who cannot inspect every process', () => {
  test('says how many processes it could not inspect and to run it as root, instead of an empty table alone', async () => {
    assert.equal(process.getuid?.(), 0, 'this test starts a root-owned listener and drops to nobody with setpriv: run it as root');
    // A root-owned listener: its /proc/PID/maps and fd/ are closed to nobody (ptrace access mode, proc(5)).
    const listener = reapOnExit(spawn(process.execPath, ['-e', "require('net').createServer().listen(0, '127.0.0.1', () => console.log('up'))"], { stdio: ['ignore', 'pipe', 'inherit'] }));
    try {
      await new Promise<void>((resolve) => listener.stdout.once('data', () => resolve()));
      const asNobody = (...args: string[]) => run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, 'scan', ...args], { timeoutMs: 60_000 });
      const json = await asNobody('--json');
      assert.equal(json.code, 0, json.stderr);
      const report = JSON.parse(json.stdout.toString('utf8')) as { notInspected: number; processes: { pid: number }[] };
      assert.ok(!report.processes.some((p) => p.pid === listener.pid), 'the root-owned listener cannot be inspected by nobody');
      assert.ok(report.notInspected >= 1, `notInspected: ${report.notInspected}`);
      const table = await asNobody();
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout.toString('utf8'), /\d+ processes? not inspected \(owned by other users\): run aludel scan as root/);
    } finally {
      listener.kill();
    }
  });
});

describe('a side listener whose port is taken', () => {
  for (const flag of ['--admin', '--redirect-http']) {
    test(`${flag}: the error names ${flag} and the address, as --listen's does`, async () => {
      const taken = net.createServer();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const port = (taken.address() as net.AddressInfo).port;
      try {
        const r = await runCli(serveArgs(fx, flag, `127.0.0.1:${port}`));
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, new RegExp(`^aludel: ${flag} 127\\.0\\.0\\.1:${port}: bind: Address already in use$`, 'm'));
      } finally {
        taken.close();
      }
    });
  }
});

describe('a port below 1024 as a user without CAP_NET_BIND_SERVICE', () => {
  for (const workers of ['1', '2']) {
    test(`--listen 127.0.0.1:443 as nobody (--workers ${workers}): says what it takes, one line, exit 2`, async () => {
      assert.equal(process.getuid?.(), 0, 'this test drops to nobody with setpriv: run it as root');
      // nobody must read the files it is given: a copy of the pair, world-readable, in a directory it may enter.
      const dir = fs.mkdtempSync(path.join(fx.dir, 'nobody-'));
      fs.chmodSync(fx.dir, 0o755);
      fs.chmodSync(dir, 0o755);
      for (const f of [fx.certFile, fx.keyFile]) fs.copyFileSync(f, path.join(dir, path.basename(f)));
      for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o644);
      const args = ['serve', '--workers', workers, '--listen', '127.0.0.1:443', '--cert', path.join(dir, path.basename(fx.certFile)), '--key', path.join(dir, path.basename(fx.keyFile)), '--root', dir];
      const r = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, ...args], { timeoutMs: 60_000 });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^aludel: --listen 127\.0\.0\.1:443: bind: Permission denied \(ports below 1024 need root or CAP_NET_BIND_SERVICE\)$/m);
    });
  }
});

describe('a cipher list OpenSSL matches nothing in', () => {
  for (const [flag, value, more] of [['--ciphers', 'RC4-MD5', /TLS 1\.2/], ['--ciphers', 'TLS_AES_128_GCM_SHA256', /TLS 1\.3 suites go in --ciphersuites/], ['--ciphersuites', 'BOGUS', /TLS 1\.3/]] as const) {
    test(`${flag} ${value}: the error names ${flag} and the value, not only OpenSSL's SSL_CTX call`, async () => {
      const r = await runCli(serveArgs(fx, flag, value));
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^aludel: ${flag} "${value}": OpenSSL matches no `, 'm'));
      assert.match(r.stderr, more);
    });
  }
});

describe('YAML config files the yaml library refuses', () => {
  test("two documents ('---' then more settings): says to keep one, not the library's parseAllDocuments() advice", async () => {
    const file = path.join(fx.dir, 'two-docs.yaml');
    fs.writeFileSync(file, 'idle-timeout: 30s\n---\nidle-timeout: 60s\n');
    const r = await runCli(serveArgs(fx, '--config', file));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /two-docs\.yaml: .*more than one YAML document/);
    assert.doesNotMatch(r.stderr, /parseAllDocuments|quote values/);
  });

  test('nesting deeper than the parser goes: says so, not "Maximum call stack size exceeded" with advice about quoting', async () => {
    const file = path.join(fx.dir, 'deep.yaml');
    fs.writeFileSync(file, `listen: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`);
    const r = await runCli(serveArgs(fx, '--config', file));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /deep\.yaml: .*nested too deeply/);
    assert.doesNotMatch(r.stderr, /call stack|quote values/);
  });
});

describe('--workers 2 with a certificate and key that do not load', () => {
  // nginx checks its configuration before it starts a worker (as `nginx -t`): one message, nothing started.
  const pairs: Record<string, () => Promise<{ certFile: string; keyFile: string }>> = {
    'a key that is not the certificate\'s': async () => ({ certFile: fx.certFile, keyFile: (await makeRsaCert(fs.mkdtempSync(path.join(fx.dir, 'other-')))).keyFile }),
    'an RSA-768 pair OpenSSL refuses (ee key too small)': async () => {
      const dir = fs.mkdtempSync(path.join(fx.dir, 'weak-'));
      const certFile = path.join(dir, 'weak.pem');
      const keyFile = path.join(dir, 'weak.key');
      const r = await run('openssl', ['req', '-x509', '-newkey', 'rsa:768', '-nodes', '-sha256', '-days', '2', '-subj', '/CN=weak', '-keyout', keyFile, '-out', certFile], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      return { certFile, keyFile };
    },
  };
  for (const [what, make] of Object.entries(pairs)) {
    test(`${what}: the primary refuses before forking, with the text --workers 1 gives, exit 2`, async () => {
      const { certFile, keyFile } = await make();
      const args = (workers: string) => ['serve', '--workers', workers, '--listen', '127.0.0.1:0', '--cert', certFile, '--key', keyFile, '--root', fx.root];
      const one = await runCli(args('1'), {}, 60_000);
      assert.equal(one.code, 2, one.stderr);
      const two = await runCli(args('2'), {}, 60_000);
      assert.equal(two.code, 2, two.stderr);
      assert.equal(two.stderr, one.stderr);
      const errors = two.stderr.split('\n').filter((l) => l.startsWith('aludel: '));
      assert.equal(errors.length, 1, two.stderr);
      assert.ok(errors[0]!.includes(certFile), errors[0]);
      assert.doesNotMatch(two.stdout, /worker started|primary: /);
    });
  }
});

describe('a start with --acme-domain that fails', () => {
  // Nothing is ordered: each start fails before the first order, so no CA is needed (the directory is never asked).
  const acme = (storage: string) => ['--acme-domain', 'example.test', '--acme-directory', 'https://127.0.0.1:1/directory', '--acme-storage', storage];
  const pairOf = (storage: string) => path.join(storage, 'certificates', 'example.test', 'pair.pem');

  test('a --cert for the same name: the error names --acme-domain and the storage directory, not a --cert never given; no stand-in left behind', async () => {
    const storage = path.join(fx.dir, 'acme-conflict');
    const own = fs.mkdtempSync(path.join(fx.dir, 'own-'));
    const made = await runCli(['cert', '--out', own, '--name', 'example.test']);
    assert.equal(made.code, 0, made.stderr);
    for (const workers of ['1', '2']) {
      const r = await runCli(['serve', '--workers', workers, '--listen', '127.0.0.1:0', '--root', fx.root, '--cert', path.join(own, 'cert.pem'), '--key', path.join(own, 'key.pem'), ...acme(storage)], {}, 60_000);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^aludel: --cert ${path.join(own, 'cert.pem')} would never be chosen: .*\\(--acme-domain example\\.test, its certificate kept in --acme-storage ${storage}\\)`, 'm'));
      assert.doesNotMatch(r.stderr, /--cert \S*pair\.pem/);
      assert.equal(fs.existsSync(pairOf(storage)), false, `--workers ${workers}: the stand-in written by the failed start is still there`);
    }
  });

  test('a --listen port that is taken (--workers 1 and 2): exit 2, and the storage holds no stand-in afterwards', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      for (const workers of ['1', '2']) {
        const storage = path.join(fx.dir, `acme-taken-${workers}`);
        const r = await runCli(['serve', '--workers', workers, '--listen', `127.0.0.1:${port}`, '--root', fx.root, ...acme(storage)], {}, 60_000);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /Address already in use/);
        assert.equal(fs.existsSync(pairOf(storage)), false, `--workers ${workers}: the stand-in written by the failed start is still there`);
      }
    } finally {
      taken.close();
    }
  });

  test('a worker that fails at start-up (--workers 2, an access log it cannot open): no stand-in left behind', async () => {
    const storage = path.join(fx.dir, 'acme-worker-fails');
    const r = await runCli(['serve', '--workers', '2', '--listen', '127.0.0.1:0', '--root', fx.root, '--access-log', path.join(fx.dir, 'no-such-dir', 'access.log'), ...acme(storage)], {}, 60_000);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stdout, /a worker failed to start/);
    assert.equal(fs.existsSync(pairOf(storage)), false, 'the stand-in written by the failed start is still there');
  });
});
