import assert from 'node:assert/strict';
import { test } from 'node:test';
import { preloadEnv } from '../../src/run/run-program.js';
import { findVersionText, parseTlsLibraries, sonameVersion } from '../../src/scan/proc-maps.js';
import { parseProcNetTcp, TCP_ESTABLISHED, TCP_LISTEN } from '../../src/scan/proc-net.js';
import { recommend, type RecommendInput } from '../../src/scan/recommend.js';

const MAPS = `55d0c8a00000-55d0c8a2e000 r--p 00000000 08:01 1311 /usr/sbin/nginx
7f1a2c000000-7f1a2c07a000 r--p 00000000 08:01 2222 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1a2c07a000-7f1a2c0d6000 r-xp 0007a000 08:01 2222 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1a2c200000-7f1a2c2a0000 r--p 00000000 08:01 3333 /usr/lib/x86_64-linux-gnu/libcrypto.so.3 (deleted)
7f1a2c400000-7f1a2c401000 r-xp 00000000 08:01 4444 /opt/aludel/build/Release/aludel-preload.so
7f1a2c600000-7f1a2c601000 r-xp 00000000 08:01 4445 /opt/aludel/build/Release/aludel.node
7f1a2c500000-7f1a2c501000 rw-p 00000000 00:00 0
7ffd4a9f0000-7ffd4aa11000 rw-p 00000000 00:00 0                          [stack]
`;

test('maps: libssl and libcrypto paths, (deleted) dropped, the preload noticed', () => {
  assert.deepEqual(parseTlsLibraries(MAPS), {
    libssl: '/usr/lib/x86_64-linux-gnu/libssl.so.3',
    libcrypto: '/usr/lib/x86_64-linux-gnu/libcrypto.so.3',
    preload: true,
    aludel: true,
  });
});

test('maps: statically linked node and lookalike names map no OpenSSL', () => {
  const maps = `00400000-04000000 r-xp 00000000 08:01 77 /usr/bin/node
7f00-7f01 r-xp 00000000 08:01 78 /usr/lib/libssl3-helper.so
7f02-7f03 r-xp 00000000 08:01 79 /home/u/libssl.so.3.bak
`;
  assert.deepEqual(parseTlsLibraries(maps), { libssl: null, libcrypto: null, preload: false, aludel: false });
});

test('maps: a path with spaces is kept whole', () => {
  const r = parseTlsLibraries('7f00-7f01 r-xp 00000000 08:01 79 /opt/my app/lib/libssl.so.1.1\n');
  assert.equal(r.libssl, '/opt/my app/lib/libssl.so.1.1');
});

test('soname versions', () => {
  assert.equal(sonameVersion('/usr/lib/libssl.so.3'), '3');
  assert.equal(sonameVersion('/usr/lib/libssl.so.1.1'), '1.1');
  assert.equal(sonameVersion('/usr/lib/libssl.so.1.0.2'), '1.0.2');
  assert.equal(sonameVersion('/usr/lib/libssl.so'), null);
});

test('version text found among binary bytes', () => {
  const bytes = Buffer.concat([Buffer.from([0, 1, 2, 0xff]), Buffer.from('OpenSSL 1.1.1w  11 Sep 2023\0'), Buffer.from([0, 9])]);
  assert.equal(findVersionText(bytes), 'OpenSSL 1.1.1w  11 Sep 2023');
  assert.equal(findVersionText(Buffer.from('\0OpenSSL 3.0.22 25 Aug 2026\0')), 'OpenSSL 3.0.22 25 Aug 2026');
  assert.equal(findVersionText(Buffer.from('OpenSSL 3 is great\0OpenSSL_version\0')), null);
});

test('/proc/net/tcp and tcp6 rows: addresses, ports, states, inodes', () => {
  const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 91234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:20FB 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 91240 1 0000000000000000 20 4 30 10 -1
`;
  assert.deepEqual(parseProcNetTcp(tcp), [
    { address: '127.0.0.1', port: 8443, state: TCP_LISTEN, inode: 91234 },
    { address: '127.0.0.1', port: 8443, state: TCP_ESTABLISHED, inode: 91240 },
  ]);
  const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 556 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 557 1 0000000000000000 100 0 0 10 0
   3: B80D0120000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 558 1 0000000000000000 100 0 0 10 0
`;
  assert.deepEqual(
    parseProcNetTcp(tcp6).map((r) => `${r.address} ${r.port} ${r.inode}`),
    [':: 443 555', '::1 8080 556', '::ffff:127.0.0.1 80 557', '2001:db8::1 80 558'],
  );
});

const base: RecommendInput = { libsslVersion: '3.0.22', libcryptoMapped: true, listeningPorts: [8443], ktls: 'no', underRun: false, aludel: false };

test('recommend: shared OpenSSL 3 -> run', () => {
  assert.equal(recommend(base).action, 'run');
  assert.match(recommend(base).reason, /aludel run/);
  assert.match(recommend({ ...base, libsslVersion: '3' }).reason, /restart/);
});

test('recommend: kTLS already on -> none', () => {
  assert.equal(recommend({ ...base, ktls: 'yes' }).action, 'none');
  assert.equal(recommend({ ...base, ktls: 'yes', libsslVersion: null, libcryptoMapped: false }).action, 'none');
});

test('recommend: Aludel itself (its addon dlopens libssl) is not sent to aludel run', () => {
  const r = recommend({ ...base, aludel: true });
  assert.equal(r.action, 'none');
  assert.match(r.reason, /Aludel itself/);
});

test('recommend: under aludel run without kTLS points at the doctor', () => {
  const r = recommend({ ...base, underRun: true });
  assert.equal(r.action, 'run');
  assert.match(r.reason, /already under aludel run.*aludel doctor/);
});

test('recommend: OpenSSL 1.1.1 -> run --strategy keys', () => {
  const r = recommend({ ...base, libsslVersion: '1.1.1w' });
  assert.equal(r.action, 'run');
  assert.match(r.reason, /aludel run --strategy keys/);
  assert.match(recommend({ ...base, libsslVersion: '1.1' }).reason, /too old/, 'a soname alone says 1.1, not 1.1.1');
});

test('recommend: OpenSSL < 1.1.1 and invisible TLS -> proxy, cache on HTTPS ports', () => {
  assert.deepEqual(
    [
      recommend({ ...base, libsslVersion: '1.1.0l', listeningPorts: [6379] }).action,
      recommend({ ...base, libsslVersion: '1.0.2u', listeningPorts: [443] }).action,
      recommend({ ...base, libsslVersion: null, libcryptoMapped: false, listeningPorts: [3000] }).action,
      recommend({ ...base, libsslVersion: null, libcryptoMapped: false, listeningPorts: [80, 8443] }).action,
    ],
    ['proxy', 'cache', 'proxy', 'cache'],
  );
  assert.match(recommend({ ...base, libsslVersion: null, libcryptoMapped: false }).reason, /TLS library not visible/);
  assert.match(recommend({ ...base, libsslVersion: '1.0.2u' }).reason, /OpenSSL 1\.0\.2u has no kTLS and is too old/);
});

test('recommend: nothing to front without a listening port or without libssl', () => {
  assert.equal(recommend({ ...base, listeningPorts: [] }).action, 'none');
  const ssh = recommend({ ...base, libsslVersion: null, listeningPorts: [22] });
  assert.equal(ssh.action, 'none');
  assert.match(ssh.reason, /libcrypto without libssl/);
});

test('LD_PRELOAD: ours appended after an existing preload, not doubled', () => {
  assert.equal(preloadEnv({}, 'option', '/x/aludel-preload.so').LD_PRELOAD, '/x/aludel-preload.so');
  assert.equal(preloadEnv({ LD_PRELOAD: '/lib/libjemalloc.so.2' }, 'option', '/x/aludel-preload.so').LD_PRELOAD, '/lib/libjemalloc.so.2:/x/aludel-preload.so');
  assert.equal(preloadEnv({ LD_PRELOAD: '/x/aludel-preload.so /a.so' }, 'option', '/x/aludel-preload.so').LD_PRELOAD, '/a.so:/x/aludel-preload.so');
  assert.equal(preloadEnv({ PATH: '/bin' }, 'option', '/p.so').PATH, '/bin', 'the rest of the environment is kept');
});

test('the strategy reaches the preload only when it is keys', () => {
  assert.equal(preloadEnv({}, 'keys', '/p.so').ALUDEL_PRELOAD_STRATEGY, 'keys');
  assert.equal(preloadEnv({ ALUDEL_PRELOAD_STRATEGY: 'keys' }, 'option', '/p.so').ALUDEL_PRELOAD_STRATEGY, undefined);
});
