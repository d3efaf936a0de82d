/** aludel run's look at a program before starting it: ELF dynamic linking read from real files, and the warnings. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { elfLinking, linkingWarnings, resolveProgram } from '../../src/run/program-check.js';

test('elfLinking: a dynamically linked program, its DT_NEEDED in order; a static-pie one; not ELF', () => {
  const openssl = elfLinking(fs.readFileSync('/usr/bin/openssl'));
  assert.equal(openssl?.interp, true);
  assert.ok(openssl!.needed.includes('libssl.so.3') && openssl!.needed.includes('libcrypto.so.3') && openssl!.needed.includes('libc.so.6'), String(openssl?.needed));
  assert.deepEqual(elfLinking(fs.readFileSync('/bin/true')), { interp: true, needed: ['libc.so.6'] });
  assert.equal(elfLinking(fs.readFileSync('/sbin/ldconfig'))?.interp, false, 'Debian builds ldconfig static-pie: no PT_INTERP');
  assert.equal(elfLinking(Buffer.from('#!/bin/sh\necho hi\n')), null);
  assert.equal(elfLinking(fs.readFileSync('/bin/true').subarray(0, 40)), null, 'a truncated header');
});

test('linkingWarnings: setuid or setgid only when the ids change; static; no OpenSSL among the needed', () => {
  const me = { uid: 1000, gid: 1000 };
  const dyn = { interp: true, needed: ['libssl.so.1.1', 'libc.so.6'] };
  assert.deepEqual(linkingWarnings('p', { mode: 0o100755, uid: 0, gid: 0 }, dyn, me), []);
  assert.match(linkingWarnings('p', { mode: 0o104755, uid: 0, gid: 0 }, dyn, me)[0]!, /^p is set-user-ID: the dynamic linker ignores LD_PRELOAD/);
  assert.deepEqual(linkingWarnings('p', { mode: 0o104755, uid: 1000, gid: 0 }, dyn, me), [], 'set-user-ID to oneself changes nothing');
  assert.match(linkingWarnings('p', { mode: 0o102755, uid: 1000, gid: 5 }, dyn, me)[0]!, /^p is set-group-ID/);
  assert.match(linkingWarnings('p', { mode: 0o100755, uid: 0, gid: 0 }, { interp: false, needed: [] }, me)[0]!, /statically linked/);
  assert.match(linkingWarnings('p', { mode: 0o100755, uid: 0, gid: 0 }, { interp: true, needed: ['libpcre.so.3', 'libc.so.6'] }, me)[0]!, /links neither libssl nor libcrypto \(libpcre\.so\.3, libc\.so\.6\)/);
  assert.deepEqual(linkingWarnings('p', { mode: 0o100755, uid: 0, gid: 0 }, { interp: true, needed: ['libcrypto.so.1.0.0'] }, me), []);
  assert.deepEqual(linkingWarnings('p', { mode: 0o100755, uid: 0, gid: 0 }, null, me), [], 'a script: nothing known');
});

test('resolveProgram: as execvp finds it', () => {
  assert.equal(resolveProgram('./x', '/usr/bin'), './x');
  assert.equal(resolveProgram('true', '/nonexistent:/usr/bin:/bin'), '/usr/bin/true');
  assert.equal(resolveProgram('no-such-program-here', '/usr/bin'), null);
});
