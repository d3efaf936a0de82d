/**
 * Read-ahead from the first handshake message on is a context option, and
 * only where kTLS is off: with kTLS, OpenSSL must read one record at a time
 * until the kernel takes RX over, or the bytes it read ahead are lost to the
 * kernel (tls-setup.ts contextOptions). The contexts buildNativeTls() asks
 * the addon for are recorded here through a wrapper around the real addon.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { ContextOptions, Native } from '../../src/native/binding.js';
import { probeCapabilities } from '../../src/offload/capabilities.js';
import { buildNativeTls, resolveTls } from '../../src/tls/tls-setup.js';
import { makeLeaf, type Pair } from '../support/sni-certs.js';

let dir: string;
let pairs: Pair[];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-read-ahead-'));
  pairs = [await makeLeaf(dir, 'a', 'ec', 'a.test', ['a.test']), await makeLeaf(dir, 'b', 'ec', 'b.test', ['b.test'])];
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The real addon, with each ctxNew() argument kept. */
function recording(native: Native): { native: Native; seen: ContextOptions[] } {
  const seen: ContextOptions[] = [];
  // The addon's functions are read-only, non-enumerable properties: inherit them, shadow one.
  const wrapped = Object.create(native) as Native;
  Object.defineProperty(wrapped, 'ctxNew', { value: (o: ContextOptions) => (seen.push(o), native.ctxNew(o)) });
  return { native: wrapped, seen };
}

test('every context of a listener reads ahead without kTLS, and none does with kTLS', (t) => {
  const caps = probeCapabilities();
  if (!caps.native) return t.skip(`no system OpenSSL here: ${caps.opensslProblem}`);
  for (const ktls of [false, true]) {
    const r = recording(caps.native);
    buildNativeTls(r.native, resolveTls({ certificates: pairs }), ktls);
    assert.ok(r.seen.length >= 1, 'at least one context built');
    for (const o of r.seen) {
      assert.equal(o.ktls, ktls);
      assert.equal(o.readAhead, !ktls, `readAhead of a context with ktls ${ktls}`);
    }
  }
});
