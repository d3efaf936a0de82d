/**
 * The addon's scratch buffers (native/tls.c scratchSet): set once per
 * thread; the same two again are accepted (a wrapper of the addon, as tests
 * make), others refused (a second copy of ktls-connection.ts then passes its
 * buffers with each call), and lengths are checked against them. This file
 * runs in a process of its own, where nothing set them before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { probeCapabilities } from '../../src/offload/capabilities.js';

test('scratchSet: once, the same buffers again accepted, others refused', (t) => {
  const native = probeCapabilities().native;
  if (!native || !native.scratchSet) return t.skip('no addon with scratchSet here');
  const read = Buffer.allocUnsafe(16384);
  const write = Buffer.allocUnsafe(16384);
  assert.throws(() => native.scratchSet!(Buffer.alloc(0), write), { code: 'ERR_INVALID_ARG' });
  native.scratchSet(read, write);
  native.scratchSet(read, write);
  const wrapped = Object.create(native) as typeof native;
  wrapped.scratchSet!(read, write);
  assert.throws(() => native.scratchSet!(Buffer.allocUnsafe(16384), write), { code: 'ERR_INVALID_STATE' });
  assert.throws(() => native.scratchSet!(read, Buffer.allocUnsafe(16384)), { code: 'ERR_INVALID_STATE' });
  // Lengths are checked before the connection is looked at: none past the buffer, none empty.
  const nobody = {} as Parameters<NonNullable<typeof native.readScratch>>[0];
  assert.throws(() => native.readScratch!(nobody, 16385), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => native.writeScratch!(nobody, 0), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => native.readScratch!(nobody, 16384), { code: 'ERR_INVALID_ARG' });
});
