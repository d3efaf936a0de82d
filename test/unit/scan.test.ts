import assert from 'node:assert/strict';
import { test } from 'node:test';
import { preloadEnv } from '../../src/run/run-program.js';
import { findVersionText, parseTlsLibraries } from '../../src/scan/proc-maps.js';
import { parseProcNetTcp, TCP_ESTABLISHED, TCP_LISTEN } from '../../src/scan/proc-net.js';
import { loopbackTarget, planProbes, probeNeeded, probePlan, recommend, tlsByPort, type Action, type PortInfo, type RecommendInput } from '../../src/scan/recommend.js';
import { formatScanTable, type ScannedProcess } from '../../src/scan/scan.js';
import { chooseStrategy, identifyLibrary, sonameVersion, type RunChoice } from '../../src/scan/strategy.js';
import { classifyReply, clientHello } from '../../src/scan/tls-probe.js';

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
    otherTls: null,
    // The first mapping of each: its /proc/<pid>/map_files name, read instead of the path (scan runs as root).
    ranges: { '/usr/lib/x86_64-linux-gnu/libssl.so.3': '7f1a2c000000-7f1a2c07a000', '/usr/lib/x86_64-linux-gnu/libcrypto.so.3': '7f1a2c200000-7f1a2c2a0000' },
  });
});

test('maps: statically linked node and lookalike names map no OpenSSL', () => {
  const maps = `00400000-04000000 r-xp 00000000 08:01 77 /usr/bin/node
7f00-7f01 r-xp 00000000 08:01 78 /usr/lib/libssl3-helper.so
7f02-7f03 r-xp 00000000 08:01 79 /home/u/libssl.so.3.bak
`;
  assert.deepEqual(parseTlsLibraries(maps), { libssl: null, libcrypto: null, preload: false, aludel: false, otherTls: null, ranges: {} });
});

test('maps: the libcrypto of libssl\'s version, and other TLS libraries named', () => {
  const maps = `7f00-7f01 r-xp 00000000 08:01 80 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f02-7f03 r-xp 00000000 08:01 81 /opt/app/lib/libssl.so.1.1
7f04-7f05 r-xp 00000000 08:01 82 /opt/app/lib/libcrypto.so.1.1
7f06-7f07 r-xp 00000000 08:01 83 /usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3
`;
  const r = parseTlsLibraries(maps);
  assert.equal(r.libssl, '/opt/app/lib/libssl.so.1.1');
  assert.equal(r.libcrypto, '/opt/app/lib/libcrypto.so.1.1', 'the one libssl.so.1.1 uses, not the first mapped');
  assert.equal(r.otherTls, 'GnuTLS (libgnutls.so.30.34.3)');
  assert.equal(parseTlsLibraries('7f00-7f01 r-xp 00000000 08:01 84 /usr/lib/x86_64-linux-gnu/libssl3.so\n').otherTls, 'NSS (libssl3.so)');
  assert.equal(parseTlsLibraries('7f00-7f01 r-xp 00000000 08:01 84 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n').libcrypto, '/usr/lib/x86_64-linux-gnu/libcrypto.so.3', 'libcrypto alone');
});

test('maps: a path with spaces is kept whole', () => {
  const r = parseTlsLibraries('7f00-7f01 r-xp 00000000 08:01 79 /opt/my app/lib/libssl.so.1.1\n');
  assert.equal(r.libssl, '/opt/my app/lib/libssl.so.1.1');
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

const HELLO_RANDOM = Buffer.alloc(32, 0xab);

test('soname versions', () => {
  assert.equal(sonameVersion('/usr/lib/libssl.so.3'), '3');
  assert.equal(sonameVersion('/usr/lib/libssl.so.1.1'), '1.1');
  assert.equal(sonameVersion('/usr/lib/libssl.so.1.0.2'), '1.0.2');
  assert.equal(sonameVersion('/usr/lib/libssl.so'), null);
});

test('version texts of OpenSSL 1.0.2 (module banners), 1.1.1, 3, and of LibreSSL and BoringSSL', () => {
  const bytes = Buffer.concat([Buffer.from([0, 1, 2, 0xff]), Buffer.from('OpenSSL 1.1.1w  11 Sep 2023\0'), Buffer.from([0, 9])]);
  assert.equal(findVersionText(bytes), 'OpenSSL 1.1.1w  11 Sep 2023');
  assert.equal(findVersionText(Buffer.from('\0OpenSSL 3.0.22 25 Aug 2026\0')), 'OpenSSL 3.0.22 25 Aug 2026');
  assert.equal(findVersionText(Buffer.from('OpenSSL 3 is great\0OpenSSL_version\0')), null);
  const bin = (...parts: string[]): Buffer => Buffer.concat(parts.flatMap((p) => [Buffer.from([0, 0x7f, 0xff]), Buffer.from(p, 'latin1')]));
  assert.equal(findVersionText(bin('AES part of OpenSSL 1.0.2f  28 Jan 2016', 'OpenSSL 1.0.2f  28 Jan 2016')), 'OpenSSL 1.0.2f  28 Jan 2016');
  assert.equal(findVersionText(bin('OpenSSL 1.0.2k-fips  26 Jan 2017')), 'OpenSSL 1.0.2k-fips  26 Jan 2017');
  assert.equal(findVersionText(bin('LibreSSL 3.8.2', 'OpenSSL 1.0.1g 7 Apr 2014')), 'LibreSSL 3.8.2', 'LibreSSL is not OpenSSL, whatever else it holds');
  assert.equal(findVersionText(bin('OpenSSL 1.1.1 (compatible; BoringSSL)')), 'OpenSSL 1.1.1 (compatible; BoringSSL)');
  assert.equal(findVersionText(bin('OpenSSL 1.1.1 (compatible; AWS-LC 1.21.0)')), 'OpenSSL 1.1.1 (compatible; AWS-LC 1.21.0)');
});

/** chooseStrategy from a version text (or none) and the mapped libssl. */
function strategyOf(text: string | null, libssl: string): RunChoice {
  return chooseStrategy(identifyLibrary(text, libssl), libssl);
}

test('strategy: shared OpenSSL 3.x -> option', () => {
  const r = strategyOf('OpenSSL 3.0.19 27 Jan 2026', '/usr/lib/x86_64-linux-gnu/libssl.so.3');
  assert.deepEqual([r.strategy, r.label], ['option', 'OpenSSL 3.0.19']);
  assert.match(r.why, /SSL_OP_ENABLE_KTLS/);
  assert.equal(strategyOf('OpenSSL 3.5.4 30 Sep 2025', '/usr/lib/libssl.so.3').strategy, 'option');
});

test('strategy: OpenSSL 1.1.1 -> keys, TLS 1.2 and 1.3', () => {
  const r = strategyOf('OpenSSL 1.1.1w  11 Sep 2023', '/usr/lib/x86_64-linux-gnu/libssl.so.1.1');
  assert.deepEqual([r.strategy, r.label], ['keys', 'OpenSSL 1.1.1w']);
  assert.match(r.why, /TLS 1\.2 and 1\.3/);
  assert.equal(strategyOf('OpenSSL 1.1.1  11 Sep 2018', '/lib/libssl.so.1.1').strategy, 'keys', '1.1.1 without a letter');
});

test('strategy: OpenSSL 1.0.2 -> keys (libssl.so.1.0.0, and RHEL\'s libssl.so.10), TLS 1.2 AES-GCM', () => {
  const r = strategyOf('OpenSSL 1.0.2f  28 Jan 2016', '/opt/legacy/lib/libssl.so.1.0.0');
  assert.deepEqual([r.strategy, r.label], ['keys', 'OpenSSL 1.0.2f']);
  assert.match(r.why, /TLS 1\.2 AES-GCM/);
  assert.equal(strategyOf('OpenSSL 1.0.2k-fips  26 Jan 2017', '/usr/lib64/libssl.so.10').strategy, 'keys');
  assert.equal(strategyOf('OpenSSL 1.0.2u  20 Dec 2019', '/usr/lib/libssl.so.1.0.0').strategy, 'keys');
});

test('strategy: 1.0.1, 1.1.0, LibreSSL, BoringSSL -> none', () => {
  for (const [text, file] of [
    ['OpenSSL 1.0.1u  22 Sep 2016', '/usr/lib/libssl.so.1.0.0'],
    ['OpenSSL 1.0.0t 3 Dec 2015', '/usr/lib/libssl.so.1.0.0'],
    ['OpenSSL 1.1.0l  10 Sep 2019', '/usr/lib/libssl.so.1.1'],
    ['LibreSSL 3.8.2', '/usr/lib/libssl.so.53'],
    ['OpenSSL 1.1.1 (compatible; BoringSSL)', '/opt/x/libssl.so'],
  ] as const) {
    const r = strategyOf(text, file);
    assert.equal(r.strategy, null, text);
    assert.ok(r.why.length > 0);
  }
  assert.match(strategyOf('LibreSSL 3.8.2', '/usr/lib/libssl.so.53').why, /LibreSSL is not OpenSSL/);
  assert.equal(strategyOf('LibreSSL 3.8.2', '/usr/lib/libssl.so.53').label, 'LibreSSL 3.8.2', 'soname 53 is not read as OpenSSL 53');
});

test('strategy without a version text: only libssl.so.3 speaks for itself', () => {
  assert.equal(strategyOf(null, '/usr/lib/libssl.so.3').strategy, 'option');
  const r = strategyOf(null, '/usr/lib/libssl.so.1.1');
  assert.equal(r.strategy, null, '1.1 could be 1.1.0');
  assert.equal(r.label, 'libssl.so.1.1 (no version text)');
});

const run3 = strategyOf('OpenSSL 3.0.19 27 Jan 2026', '/usr/lib/libssl.so.3');
const run111 = strategyOf('OpenSSL 1.1.1w  11 Sep 2023', '/usr/lib/libssl.so.1.1');
const run102 = strategyOf('OpenSSL 1.0.2f  28 Jan 2016', '/usr/lib/libssl.so.1.0.0');
const run101 = strategyOf('OpenSSL 1.0.1u  22 Sep 2016', '/usr/lib/libssl.so.1.0.0');
const libre = strategyOf('LibreSSL 3.8.2', '/usr/lib/libssl.so.53');
const tlsPort = (port: number): PortInfo => ({ port, tls: 'yes', note: 'probe: TLS handshake record' });
const plainPort = (port: number): PortInfo => ({ port, tls: 'no', note: 'probe: answered "HTTP/1.1 400 Bad"' });
const base: RecommendInput = { run: run3, libcryptoMapped: true, otherTls: null, listening: [tlsPort(4433)], ktls: 'no', underRun: false, aludel: false };

test('recommend: the decision table (3.x option, 1.1.1 keys, 1.0.2 keys, 1.0.1 and LibreSSL none, plain HTTP not run)', () => {
  const cases: Array<[string, RecommendInput, Action, RegExp]> = [
    ['3.x on a TLS port', base, 'run', /^TLS on port 4433: restart it under aludel run \(option: /],
    ['1.1.1 on a TLS port', { ...base, run: run111 }, 'run', /aludel run \(keys: OpenSSL 1\.1\.1 has no kTLS/],
    ['1.0.2 on a TLS port', { ...base, run: run102, listening: [tlsPort(443), plainPort(80), tlsPort(443)] }, 'run', /^TLS on port 443: .*\(keys: OpenSSL 1\.0\.2 has no kTLS/],
    ['3.x on two TLS ports', { ...base, listening: [tlsPort(443), tlsPort(8443)] }, 'run', /^TLS on ports 443, 8443: /],
    ['1.0.1 on 443', { ...base, run: run101, listening: [tlsPort(443)] }, 'cache', /^OpenSSL 1\.0\.1u: no aludel run strategy .*terminate TLS in front/],
    ['1.0.1 elsewhere', { ...base, run: run101 }, 'proxy', /no aludel run strategy/],
    ['LibreSSL', { ...base, run: libre }, 'proxy', /^LibreSSL 3\.8\.2: no aludel run strategy/],
    ['3.x, plain HTTP only', { ...base, listening: [plainPort(80), plainPort(80)] }, 'none', /^no TLS on its ports \(80: probe: answered "HTTP\/1\.1 400 Bad"\): nothing for kernel TLS/],
    ['1.0.2, plain HTTP only', { ...base, run: run102, listening: [plainPort(8000)] }, 'none', /^no TLS on its ports/],
  ];
  for (const [what, input, action, reason] of cases) {
    const r = recommend(input);
    assert.equal(r.action, action, what);
    assert.match(r.reason, reason, what);
  }
});

test('recommend: a port whose TLS is unknown keeps run, saying it is unchecked', () => {
  const r = recommend({ ...base, listening: [plainPort(80), { port: 9000, tls: 'unknown', note: 'not probed: in another network namespace' }] });
  assert.equal(r.action, 'run');
  assert.match(r.reason, /^if it serves TLS \(9000: not probed: in another network namespace\)/);
});

test('recommend: kTLS already on, Aludel itself, no port, libcrypto only -> none', () => {
  assert.equal(recommend({ ...base, ktls: 'yes' }).action, 'none');
  assert.equal(recommend({ ...base, ktls: 'yes', run: null, libcryptoMapped: false }).action, 'none');
  const aludel = recommend({ ...base, aludel: true });
  assert.equal(aludel.action, 'none');
  assert.match(aludel.reason, /Aludel itself/);
  assert.equal(recommend({ ...base, listening: [] }).action, 'none');
  const ssh = recommend({ ...base, run: null, listening: [plainPort(22)] });
  assert.equal(ssh.action, 'none');
  assert.match(ssh.reason, /libcrypto without libssl/);
});

test('recommend: under aludel run without kTLS points at the doctor; a plain port stays none', () => {
  const r = recommend({ ...base, underRun: true });
  assert.equal(r.action, 'run');
  assert.match(r.reason, /already under aludel run \(option: .*aludel doctor/);
  assert.equal(recommend({ ...base, underRun: true, listening: [plainPort(80)] }).action, 'none');
});

test('recommend: invisible TLS and other libraries -> proxy, cache on HTTPS ports', () => {
  const invisible = { ...base, run: null, libcryptoMapped: false };
  assert.deepEqual(
    [recommend({ ...invisible, listening: [plainPort(3000)] }).action, recommend({ ...invisible, listening: [plainPort(80), tlsPort(8443)] }).action],
    ['proxy', 'cache'],
  );
  assert.match(recommend(invisible).reason, /TLS library not visible/);
  const gnutls = recommend({ ...invisible, otherTls: 'GnuTLS (libgnutls.so.30)' });
  assert.equal(gnutls.action, 'proxy');
  assert.match(gnutls.reason, /^GnuTLS \(libgnutls\.so\.30\): aludel run works with OpenSSL only/);
});

test('probes: only loopback-reachable listeners, never STARTTLS ports', () => {
  assert.deepEqual(
    ['0.0.0.0', '127.0.0.1', '::ffff:127.0.0.1', '::', '::1', '10.0.0.5', '127.0.0.53', '2001:db8::1'].map(loopbackTarget),
    ['127.0.0.1', '127.0.0.1', '127.0.0.1', '::1', '::1', null, null, null],
  );
  assert.deepEqual(probePlan('0.0.0.0', 443), { host: '127.0.0.1' });
  assert.deepEqual(probePlan('::', 8443), { host: '::1' });
  assert.deepEqual(probePlan('0.0.0.0', 25), { skip: 'the smtp server speaks first (STARTTLS)' });
  assert.deepEqual(probePlan('10.0.0.5', 443), { skip: 'bound to 10.0.0.5, not reachable on 127.0.0.1 or ::1' });
  assert.equal(probeNeeded({ run: run3, ktls: 'no', aludel: false }), null);
  assert.equal(probeNeeded({ run: run102, ktls: 'idle', aludel: false }), null);
  assert.match(probeNeeded({ run: run101, ktls: 'no', aludel: false }) ?? '', /no strategy for OpenSSL 1\.0\.1u/);
  assert.match(probeNeeded({ run: null, ktls: 'no', aludel: false }) ?? '', /no shared OpenSSL/);
  assert.match(probeNeeded({ run: run3, ktls: 'yes', aludel: false }) ?? '', /already use kernel TLS/);
});

test('probes: one connection per port and program, whichever processes share the listener', () => {
  const plan = planProbes([
    // nginx: master 100 and workers 101, 102 share both sockets; 0.0.0.0:443 and [::]:443 are one program.
    ...[100, 101, 102].flatMap((pid) => [
      { pid, inode: 7001, address: '0.0.0.0', port: 443 },
      { pid, inode: 7002, address: '::', port: 443 },
      { pid, inode: 7003, address: '0.0.0.0', port: 80 },
    ]),
    // Another program on [::]:8443 and one on 127.0.0.1:8443: two programs, two probes.
    { pid: 200, inode: 8001, address: '::', port: 8443 },
    { pid: 300, inode: 9001, address: '127.0.0.1', port: 8443 },
    // Not probed: a STARTTLS port, a non-loopback address.
    { pid: 400, inode: 9101, address: '0.0.0.0', port: 25 },
    { pid: 400, inode: 9102, address: '10.0.0.5', port: 9000 },
  ]);
  assert.deepEqual(plan.targets, [
    { host: '127.0.0.1', port: 443 },
    { host: '127.0.0.1', port: 80 },
    { host: '::1', port: 8443 },
    { host: '127.0.0.1', port: 8443 },
  ]);
  assert.deepEqual([...plan.targetOf], [
    ['100 443', 0], ['100 80', 1], ['101 443', 0], ['101 80', 1], ['102 443', 0], ['102 80', 1], ['200 8443', 2], ['300 8443', 3],
  ]);
});

test('ports not probed: the port number decides where it has a convention', () => {
  assert.deepEqual(tlsByPort(443, 'x'), { port: 443, tls: 'yes', note: 'port 443 (https); not probed: x' });
  assert.deepEqual(tlsByPort(587, 'x'), { port: 587, tls: 'yes', note: 'port 587 (submission): TLS after STARTTLS; not probed: x' });
  assert.deepEqual(tlsByPort(80, 'x'), { port: 80, tls: 'no', note: 'port 80 (http); not probed: x' });
  assert.deepEqual(tlsByPort(9000, 'x'), { port: 9000, tls: 'unknown', note: 'not probed: x' });
});

test('the probe\'s ClientHello: one TLS 1.2 record with consistent lengths, no SNI', () => {
  const hello = clientHello(HELLO_RANDOM);
  assert.deepEqual([...hello.subarray(0, 3)], [22, 3, 1], 'handshake record, version 0x0301');
  assert.equal(hello.readUInt16BE(3), hello.length - 5, 'record length');
  assert.equal(hello[5], 1, 'client_hello');
  assert.equal(hello.readUIntBE(6, 3), hello.length - 9, 'handshake length');
  assert.deepEqual([...hello.subarray(9, 11)], [3, 3], 'client_version TLS 1.2');
  assert.ok(hello.subarray(11, 43).equals(HELLO_RANDOM));
  assert.equal(hello[43], 0, 'no session id');
  const suitesLen = hello.readUInt16BE(44);
  const suites = Array.from({ length: suitesLen / 2 }, (_, i) => hello.readUInt16BE(46 + 2 * i));
  assert.ok(suites.includes(0xc02f) && suites.includes(0x009c) && suites.includes(0xcca9), 'ECDHE and RSA AES-GCM, ChaCha20');
  let off = 46 + suitesLen;
  assert.deepEqual([...hello.subarray(off, off + 2)], [1, 0], 'null compression only');
  off += 2;
  assert.equal(hello.readUInt16BE(off), hello.length - off - 2, 'extensions length');
  const types: number[] = [];
  for (let i = off + 2; i < hello.length; i += 4 + hello.readUInt16BE(i + 2)) types.push(hello.readUInt16BE(i));
  assert.deepEqual(types, [0x000a, 0x000b, 0x000d], 'supported_groups, ec_point_formats, signature_algorithms; no server_name');
  assert.throws(() => clientHello(Buffer.alloc(31)));
});

test('probe answers: a TLS record header is TLS, other bytes are not, silence is unknown', () => {
  assert.deepEqual(classifyReply(Buffer.from([22, 3, 3, 0, 0x5a]), 'data'), { tls: 'yes', note: 'probe: TLS handshake record' });
  assert.deepEqual(classifyReply(Buffer.from([21, 3, 1, 0, 2, 2, 70]), 'data'), { tls: 'yes', note: 'probe: TLS alert' });
  assert.deepEqual(classifyReply(Buffer.from('HTTP/1.1 400 Bad Request\r\n'), 'data'), { tls: 'no', note: 'probe: answered "HTTP/1.1 400 Bad"' });
  assert.deepEqual(classifyReply(Buffer.from('-ERR\r\n\0'), 'closed'), { tls: 'no', note: 'probe: answered "-ERR..."' });
  assert.equal(classifyReply(Buffer.from([22, 3, 3, 0xff, 0xff]), 'data').tls, 'no', 'longer than any TLS record');
  assert.equal(classifyReply(Buffer.from([22, 2, 0, 0, 5]), 'data').tls, 'no', 'not TLS\'s major version');
  assert.equal(classifyReply(Buffer.from([22, 3]), 'closed').tls, 'no', 'a cut header');
  assert.deepEqual(classifyReply(Buffer.alloc(0), 'closed'), { tls: 'unknown', note: 'probe: closed without answering' });
  assert.deepEqual(classifyReply(Buffer.alloc(0), 'timeout', 250), { tls: 'unknown', note: 'probe: no answer within 250 ms' });
});

function scanned(over: Partial<ScannedProcess>): ScannedProcess {
  return {
    pid: 1,
    command: 'nginx',
    exe: '/usr/sbin/nginx',
    openssl: null,
    strategy: null,
    strategyReason: '',
    otherTls: null,
    underRun: false,
    listening: [],
    established: 0,
    ktlsSockets: [],
    ktls: 'idle',
    ktlsNote: null,
    recommendation: { action: 'none', reason: 'r' },
    ...over,
  };
}

test('the table: version, strategy and TLS columns', () => {
  const ossl = (version: string, library: string | null = 'OpenSSL') => ({ libssl: '/l/libssl.so.x', libcrypto: '/l/libcrypto.so.x', library, version, versionText: null });
  const table = formatScanTable({
    netAdmin: true,
    notInspected: 0,
    processes: [
      scanned({ pid: 10, openssl: ossl('1.0.2f'), strategy: 'keys', listening: [{ address: '0.0.0.0', port: 443, tls: 'yes', tlsNote: '' }, { address: '0.0.0.0', port: 80, tls: 'no', tlsNote: '' }], recommendation: { action: 'run', reason: 'TLS on port 443' } }),
      scanned({ pid: 11, openssl: ossl('3.0.19'), strategy: 'option', listening: [{ address: '::', port: 80, tls: 'no', tlsNote: '' }], recommendation: { action: 'none', reason: 'no TLS on its ports' } }),
      scanned({ pid: 12, openssl: ossl('3.8.2', 'LibreSSL'), listening: [{ address: '10.0.0.5', port: 9000, tls: 'unknown', tlsNote: '' }], recommendation: { action: 'proxy', reason: 'p' } }),
      scanned({ pid: 13, otherTls: 'GnuTLS (libgnutls.so.30)' }),
    ],
  });
  const lines = table.split('\n');
  assert.match(lines[0]!, /^pid\s+command\s+openssl\s+strategy\s+TLS\s+listening\s+kTLS\s+recommend\s+why$/);
  assert.match(lines[1]!, /^10\s+nginx\s+1\.0\.2f\s+keys\s+yes\s+0\.0\.0\.0:443 0\.0\.0\.0:80\s+idle\s+run\s+TLS on port 443$/);
  assert.match(lines[2]!, /^11\s+nginx\s+3\.0\.19\s+option\s+no\s+\[::\]:80\s+idle\s+none\s+no TLS on its ports$/);
  assert.match(lines[3]!, /^12\s+nginx\s+LibreSSL 3\.8\.2\s+-\s+\?\s+10\.0\.0\.5:9000\s+idle\s+proxy\s+p$/);
  assert.match(lines[4]!, /^13\s+nginx\s+GnuTLS \(libgnutls\.so\.30\)\s+-\s+-\s+-\s+idle\s+none\s+r$/);
  assert.match(table, /^strategy: what aludel run would take/m);
});

test('LD_PRELOAD: ours appended after an existing preload, not doubled', () => {
  assert.equal(preloadEnv({}, 'option', '/x/aludel-preload.so').LD_PRELOAD, '/x/aludel-preload.so');
  assert.equal(preloadEnv({ LD_PRELOAD: '/lib/libjemalloc.so.2' }, 'option', '/x/aludel-preload.so').LD_PRELOAD, '/lib/libjemalloc.so.2:/x/aludel-preload.so');
  assert.equal(preloadEnv({ LD_PRELOAD: '/x/aludel-preload.so /a.so' }, 'option', '/x/aludel-preload.so').LD_PRELOAD, '/a.so:/x/aludel-preload.so');
  assert.equal(preloadEnv({ PATH: '/bin' }, 'option', '/p.so').PATH, '/bin', 'the rest of the environment is kept');
});

test('a forced strategy reaches the preload; auto (the default) leaves the choice to it, whatever the caller\'s environment says', () => {
  assert.equal(preloadEnv({}, 'keys', '/p.so').ALUDEL_PRELOAD_STRATEGY, 'keys');
  assert.equal(preloadEnv({ ALUDEL_PRELOAD_STRATEGY: 'keys' }, 'option', '/p.so').ALUDEL_PRELOAD_STRATEGY, 'option');
  assert.equal(preloadEnv({ ALUDEL_PRELOAD_STRATEGY: 'keys' }, 'auto', '/p.so').ALUDEL_PRELOAD_STRATEGY, undefined);
  assert.equal(preloadEnv({ ALUDEL_PRELOAD_STRATEGY: 'option' }).ALUDEL_PRELOAD_STRATEGY, undefined);
});
