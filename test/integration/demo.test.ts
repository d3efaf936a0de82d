/** The README's first command: `aludel demo` fronts its sample legacy app and says what to curl. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startAludel } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { sha256 } from '../support/fixtures.js';
import { waitUntil } from '../support/wait.js';

test('aludel demo: the printed commands work and the big file matches the printed sha256', async () => {
  const demo = await startAludel(['demo', '--listen', '127.0.0.1:0']);
  try {
    await waitUntil(() => demo.stderr().includes('Ctrl-C stops it.'));
    const out = demo.stderr();
    const cacert = /curl --cacert (\S+) (https:\/\/\S+)\/\n/.exec(out);
    assert.ok(cacert, out);
    const [, certFile, url] = cacert;
    const hello = await curl(['--cacert', certFile!, `${url}/`]);
    assert.equal(hello.code, 0, hello.stderr);
    assert.match(hello.stdout.toString(), /Hello from the legacy app/);
    assert.match(hello.stdout.toString(), /x-forwarded-proto: https/);
    const want = /expect ([0-9a-f]{64})/.exec(out)?.[1];
    const big = await curl(['--cacert', certFile!, `${url}/big.bin`]);
    assert.equal(sha256(big.stdout), want);
    assert.match(out, /crypto: (kernel TLS|userspace)/);
    await demo.waitForLog((l) => l.msg === 'request' && l.url === '/big.bin' && l.bytes === 16 * 1024 * 1024);
  } finally {
    await demo.stop();
  }
});

test('a demo that cannot start (address taken) says why and leaves no temporary directory behind', async () => {
  const { default: fs } = await import('node:fs');
  const { default: os } = await import('node:os');
  const { default: net } = await import('node:net');
  const { runCli } = await import('../support/aludel-process.js');
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as { port: number }).port;
  const demos = (): string[] => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('aludel-demo-')).sort();
  const before = demos();
  try {
    const r = await runCli(['demo', '--listen', `127.0.0.1:${port}`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`--listen 127\\.0\\.0\\.1:${port}: bind: Address already in use`));
    assert.deepEqual(demos(), before, 'the self-signed certificate directory was removed');
  } finally {
    busy.close();
  }
});

test('a demo ended by HUP (its terminal closed) or QUIT (Ctrl-\\) removes its directory and private key, as Ctrl-C does', async () => {
  const { default: fs } = await import('node:fs');
  for (const signal of ['SIGHUP', 'SIGQUIT'] as const) {
    const demo = await startAludel(['demo', '--listen', '127.0.0.1:0']);
    await waitUntil(() => demo.stderr().includes('Ctrl-C stops it.'));
    const certFile = /curl --cacert (\S+) /.exec(demo.stderr())![1]!;
    const dir = /^(.*\/aludel-demo-[^/]+)\//.exec(certFile)![1]!;
    assert.ok(fs.existsSync(certFile), certFile);
    const exited = new Promise<number | null>((resolve) => demo.child.once('exit', (code) => resolve(code)));
    demo.child.kill(signal);
    assert.equal(await exited, 0, signal);
    assert.equal(fs.existsSync(dir), false, `${signal}: ${dir}, with the key, was removed`);
  }
});
