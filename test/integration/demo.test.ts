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
