/**
 * Settings that nginx refuses when it reads its config (nginx -t, nginx -s
 * reload) are refused here at start-up (exit 2) and on SIGHUP ("reload
 * failed", the old settings keep serving), not discovered at the first
 * request.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli, startAludel, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';

let fx: StandardFixtures;
before(async () => {
  fx = await makeFixtures();
});
after(() => fx?.cleanup());

/** HUPs `p` after `write()` and returns the reload's log line ("reloaded..." or "reload failed..."). */
async function reloadWith(p: Running, write: () => void): Promise<{ msg: string; detail: string }> {
  write();
  const from = p.mark();
  p.child.kill('SIGHUP');
  const l = await p.waitForLog((x) => x.msg.startsWith('reload failed') || x.msg.startsWith('reloaded'), 10_000, from);
  return { msg: l.msg, detail: String(l.detail ?? '') };
}

describe('upstream TLS settings are built when the settings are read', () => {
  let origin: https.Server;
  let originPort: number;
  before(async () => {
    origin = https.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile) }, (_q, s) => s.end('tls-upstream\n'));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originPort = (origin.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => origin.close(() => r())));

  const yaml = (extra: string): string => `listen: 127.0.0.1:0\ncert: ${fx.certFile}\nkey: ${fx.keyFile}\nto: https://127.0.0.1:${originPort}\nupstream-ca: ${fx.certFile}\n${extra}`;

  test('a reload with an upstream-ca that is not PEM, or upstream-ciphers OpenSSL matches nothing in, fails and the old settings serve', async () => {
    const config = path.join(fx.outDir, 'upstream-tls.yaml');
    const notCa = path.join(fx.outDir, 'not-a-ca.pem');
    fs.writeFileSync(notCa, 'this is not a certificate\n');
    fs.writeFileSync(config, yaml(''));
    const p = await startAludel(['proxy', '--config', config]);
    try {
      const get = (): Promise<string> => curl(['--cacert', fx.certFile, '-s', '-o', '/dev/null', '-w', '%{http_code}', `https://localhost:${p.port}/`]).then((r) => r.stdout.toString());
      assert.equal(await get(), '200');
      const ca = await reloadWith(p, () => fs.writeFileSync(config, yaml('').replace(`upstream-ca: ${fx.certFile}`, `upstream-ca: ${notCa}`)));
      assert.match(ca.msg, /^reload failed/);
      assert.match(ca.detail, /upstream-ca.*not-a-ca\.pem: no PEM certificate/);
      assert.equal(await get(), '200', 'still serving with the previous upstream-ca');
      const ciphers = await reloadWith(p, () => fs.writeFileSync(config, yaml('upstream-ciphers: NOSUCHCIPHER\n')));
      assert.match(ciphers.msg, /^reload failed/);
      assert.match(ciphers.detail, /upstream-ciphers.*NOSUCHCIPHER.*no cipher/);
      assert.equal(await get(), '200', 'still serving with the previous cipher list');
      assert.match((await reloadWith(p, () => fs.writeFileSync(config, yaml('')))).msg, /^reloaded/);
    } finally {
      await p.stop();
    }
  });

  test('start-up with such settings exits 2 naming the setting', async () => {
    const notCa = path.join(fx.outDir, 'not-a-ca-2.pem');
    fs.writeFileSync(notCa, 'this is not a certificate\n');
    const base = ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `https://127.0.0.1:${originPort}`];
    const ca = await runCli([...base, '--upstream-ca', notCa]);
    assert.equal(ca.code, 2, ca.stderr);
    assert.match(ca.stderr, /--upstream-ca: .*no PEM certificate/);
    const ciphers = await runCli([...base, '--upstream-ciphers', 'NOSUCHCIPHER']);
    assert.equal(ciphers.code, 2, ciphers.stderr);
    assert.match(ciphers.stderr, /--upstream-ciphers: "NOSUCHCIPHER": OpenSSL matches no cipher/);
  });
});

describe('--config names a regular file of at most 1 MiB', () => {
  test('a FIFO, /dev/zero or a 2 MiB file: start-up exits 2 at once with the reason', async () => {
    const fifo = path.join(fx.outDir, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    const zero = path.join(fx.outDir, 'zero.yaml');
    fs.symlinkSync('/dev/zero', zero);
    const huge = path.join(fx.outDir, 'huge.yaml');
    fs.writeFileSync(huge, '');
    fs.truncateSync(huge, 2 * 1024 * 1024);
    for (const [file, why] of [[fifo, /not a regular file/], [zero, /not a regular file/], [huge, /larger than 1048576 bytes/]] as const) {
      const r = await runCli(['proxy', '--config', file], undefined, 5_000);
      assert.equal(r.code, 2, `${file}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`--config ${file}: ${why.source}`));
    }
  });

  test('a reload of a config swapped for a FIFO fails at once; the next reload and SIGTERM still work', async () => {
    const good = path.join(fx.outDir, 'good.yaml');
    fs.writeFileSync(good, `listen: 127.0.0.1:0\ncert: ${fx.certFile}\nkey: ${fx.keyFile}\nto: http://127.0.0.1:9\n`);
    const fifo = path.join(fx.outDir, 'swapped.fifo');
    execFileSync('mkfifo', [fifo]);
    const config = path.join(fx.outDir, 'live.yaml');
    fs.symlinkSync(good, config);
    const p = await startAludel(['proxy', '--config', config]);
    try {
      const swap = (to: string) => (): void => { fs.unlinkSync(config); fs.symlinkSync(to, config); };
      const bad = await reloadWith(p, swap(fifo));
      assert.match(bad.msg, /^reload failed/);
      assert.match(bad.detail, /not a regular file/);
      assert.match((await reloadWith(p, swap(good))).msg, /^reloaded/, 'the FIFO blocked nothing');
    } finally {
      assert.equal(await p.stop(), 0, 'SIGTERM ends the process');
    }
  });
});

describe('a JSON config with a key given twice', () => {
  test('is refused naming the key, at start-up and on reload (nginx: "directive is duplicate"; YAML configs already were)', async () => {
    const config = path.join(fx.outDir, 'dup.json');
    const json = (dup: boolean): string => `{"listen": "127.0.0.1:0", "cert": ${JSON.stringify(fx.certFile)}, "key": ${JSON.stringify(fx.keyFile)},\n "to": "http://127.0.0.1:9"${dup ? ',\n "to": "http://127.0.0.1:10"' : ''}}\n`;
    fs.writeFileSync(config, json(true));
    const r = await runCli(['proxy', '--config', config]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /dup\.json: "to" given more than once/);
    fs.writeFileSync(config, json(false));
    const p = await startAludel(['proxy', '--config', config]);
    try {
      const bad = await reloadWith(p, () => fs.writeFileSync(config, json(true)));
      assert.match(bad.msg, /^reload failed/);
      assert.match(bad.detail, /"to" given more than once/);
    } finally {
      await p.stop();
    }
  });
});
