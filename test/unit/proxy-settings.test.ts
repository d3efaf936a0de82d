import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Command, CommanderError } from 'commander';
import { addProxyOptions, resolveProxySettings, resolveServeSettings, type ProxyFlags } from '../../src/cli/proxy-options.js';
import { normaliseFingerprint } from '../../src/config/fingerprint.js';
import { parseFlag } from '../../src/config/setting-issues.js';
import { adminAddress, offloadMode, offloadPolicy, tlsVersion } from '../../src/config/setting-values.js';
import type { ProxySettings, ServeSettings } from '../../src/config/proxy-settings.js';
import { InvalidOptionError } from '../../src/errors.js';
import { makeLeaf } from '../support/sni-certs.js';

const FP = 'ab'.repeat(32);
const FP_NORMAL = Array(32).fill('AB').join(':');

let dir: string;
let cert: string;
let key: string;
let ca: string;

before(async () => {
  dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-proxy-settings-'));
  // Only readability is checked for cert and key here (their contents are OpenSSL's business when the
  // listener's context is built); upstream-ca must hold a certificate, as nginx's proxy_ssl_trusted_certificate.
  for (const name of ['cert.pem', 'key.pem']) await fs.promises.writeFile(path.join(dir, name), 'pem\n');
  await makeLeaf(dir, 'ca', 'ec', 'upstream-ca.test', null);
  await fs.promises.rename(path.join(dir, 'ca.crt'), path.join(dir, 'ca.pem'));
  [cert, key, ca] = ['cert.pem', 'key.pem', 'ca.pem'].map((n) => path.join(dir, n)) as [string, string, string];
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Writes a config file in the temp dir; returns its path. */
function configFile(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

/** Parses argv the way the CLI will (so commander's handling of the flags is part of the test), then resolves. */
async function fromArgv(mode: 'http' | 'tcp', argv: string[]): Promise<ProxySettings> {
  const cmd = addProxyOptions(new Command(mode === 'http' ? 'proxy' : 'tcp'), mode).exitOverride();
  cmd.action(() => {});
  await cmd.parseAsync(argv, { from: 'user' });
  return resolveProxySettings(mode, cmd.opts<ProxyFlags>());
}

/** Asserts an InvalidOptionError whose message contains every needle. */
async function rejectsWith(p: Promise<unknown>, ...needles: string[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof InvalidOptionError, `expected InvalidOptionError, got ${String(err)}`);
    for (const n of needles) assert.ok(err.message.includes(n), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(n)}`);
    return true;
  });
}

const minimal = (): ProxyFlags => ({ cert, key, to: ['http://127.0.0.1:8080'] });

describe('defaults', () => {
  test('aludel proxy with only cert, key and one upstream', async () => {
    const s = await resolveProxySettings('http', minimal());
    assert.deepEqual(s, {
      mode: 'http',
      listen: [{ host: '127.0.0.1', port: 8443 }],
      certificates: [{ certFile: cert, keyFile: key }],
      offload: 'auto',
      offloadPolicy: 'default',
      tlsMin: 'TLSv1.2',
      tlsMax: 'TLSv1.3',
      ciphers: null,
      ciphersuites: null,
      upstreams: [{ url: 'http://127.0.0.1:8080', protocol: 'http', host: '127.0.0.1', port: 8080, tls: null }],
      handshakeTimeoutMs: 10_000,
      maxConnections: null,
      idleTimeoutMs: 60_000,
      shutdownTimeoutMs: 30_000,
      headersTimeoutMs: 20_000,
      connectTimeoutMs: 5_000,
      upstreamHeadersTimeoutMs: 60_000,
      upstreamIdleTimeoutMs: 60_000,
      maxHeaderSize: 16_384,
      accessLog: { file: null, format: 'json', off: false },
      redirectHttp: null,
      acme: null,
      maxHeaderCount: 100,
      maxBodySize: null,
      keepAlive: { maxIdle: 32, idleTimeoutMs: 30_000 },
      trustForwarded: false,
      healthCheck: { intervalMs: 0, timeoutMs: 2_000, path: null, maxFails: 1, failTimeoutMs: 10_000 },
      logLevel: 'info',
      reusePort: false,
      admin: null,
      workers: os.availableParallelism(),
      workersAuto: true,
      ticketKeyFiles: [],
      cache: null,
      http2: true,
      http2MaxConcurrentStreams: 128,
    } satisfies ProxySettings);
  });

  test('aludel serve: the same listener defaults, its root, and no upstream settings', async () => {
    const root = path.dirname(cert);
    const s = await resolveServeSettings({ cert, key, root });
    assert.deepEqual(s, {
      mode: 'serve',
      listen: [{ host: '127.0.0.1', port: 8443 }],
      certificates: [{ certFile: cert, keyFile: key }], root,
      offload: 'auto', offloadPolicy: 'default', tlsMin: 'TLSv1.2', tlsMax: 'TLSv1.3', ciphers: null, ciphersuites: null,
      handshakeTimeoutMs: 10_000, maxConnections: null, idleTimeoutMs: 60_000, shutdownTimeoutMs: 30_000, logLevel: 'info', reusePort: false, admin: null,
      workers: os.availableParallelism(), workersAuto: true, ticketKeyFiles: [],
      headersTimeoutMs: 20_000, maxHeaderSize: 16_384, accessLog: { file: null, format: 'json', off: false }, redirectHttp: null, acme: null,
      http2: true, http2MaxConcurrentStreams: 128,
    } satisfies ServeSettings);
  });

  test('https upstream: TLS 1.2-1.3, system CAs, SNI = host name, none for an IP', async () => {
    const s = await resolveProxySettings('http', { cert, key, to: ['https://app.internal', 'https://10.1.2.3:8443'] });
    assert.deepEqual(s.upstreams[0]!.tls, {
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
      ciphers: null,
      caFile: null,
      caPem: null,
      fingerprint256: null,
      verify: true,
      servername: 'app.internal',
    });
    assert.equal(s.upstreams[1]!.tls?.servername, null);
  });

  test('aludel tcp needs --listen (no conventional port) and then has the same defaults', async () => {
    await rejectsWith(resolveProxySettings('tcp', { cert, key, to: ['127.0.0.1:5432'] }), '--listen is required for aludel tcp');
    const s = await resolveProxySettings('tcp', { cert, key, to: ['127.0.0.1:5432'], listen: '127.0.0.1:9993' });
    assert.equal(s.mode, 'tcp');
    assert.deepEqual(s.listen, [{ host: '127.0.0.1', port: 9993 }]);
    assert.deepEqual(s.upstreams, [{ url: '127.0.0.1:5432', protocol: 'tcp', host: '127.0.0.1', port: 5432, tls: null }]);
    assert.equal(s.connectTimeoutMs, 5_000);
  });

  test('health check timeout defaults to 2s, or the interval when shorter', async () => {
    assert.equal((await resolveProxySettings('http', { ...minimal(), healthCheckInterval: '10s' })).healthCheck.timeoutMs, 2_000);
    assert.equal((await resolveProxySettings('http', { ...minimal(), healthCheckInterval: '500ms' })).healthCheck.timeoutMs, 500);
  });
});

describe('config file', () => {
  test('YAML only: every kind of value, paths relative to the file', async () => {
    const file = configFile(
      'full.yaml',
      [
        'listen: "[::1]:9443"',
        'cert: cert.pem',
        'key: key.pem',
        'to:',
        '  - https://[fd00::5]:8443',
        '  - http://app.internal',
        'offload: userspace',
        'offload-policy: prefer-hw',
        'tls-min: 1.3',
        'tls-max: "1.3"',
        'ciphers: ECDHE-RSA-AES128-GCM-SHA256',
        'handshake-timeout: 3s',
        'connect-timeout: 500ms',
        'max-header-size: 32k',
        'max-header-count: 50',
        'max-body-size: 10m',
        'upstream-keepalive: 0',
        'trust-forwarded: true',
        'upstream-tls-min: 1.0', // YAML reads this as the number 1
        'upstream-ciphers: "DEFAULT:@SECLEVEL=0"',
        'upstream-ca: ca.pem',
        'upstream-servername: legacy.example',
        'health-check-interval: 5s',
        'health-check-path: /healthz',
        'max-fails: 3',
        'fail-timeout: 30s',
        'log-level: debug',
        'reuse-port: true',
        'admin: 9100', // a YAML number: the port, on 127.0.0.1
        'cache: cache-dir',
        'cache-size: 2GiB',
        'cache-stale-if-error: 30s',
        'targeted-cache-control: Aludel-Cache-Control',
      ].join('\n'),
    );
    const s = await resolveProxySettings('http', { config: file });
    assert.deepEqual(s.listen, [{ host: '::1', port: 9443 }]);
    assert.deepEqual(s.certificates, [{ certFile: cert, keyFile: key }]);
    assert.equal(s.offload, 'userspace');
    assert.equal(s.offloadPolicy, 'prefer-hw');
    assert.equal(s.tlsMin, 'TLSv1.3');
    assert.equal(s.tlsMax, 'TLSv1.3');
    assert.equal(s.ciphers, 'ECDHE-RSA-AES128-GCM-SHA256');
    assert.equal(s.handshakeTimeoutMs, 3_000);
    assert.equal(s.connectTimeoutMs, 500);
    assert.equal(s.maxHeaderSize, 32 * 1024);
    assert.equal(s.maxHeaderCount, 50);
    assert.equal(s.maxBodySize, 10 * 1024 * 1024);
    assert.equal(s.keepAlive.maxIdle, 0);
    assert.equal(s.trustForwarded, true);
    assert.deepEqual(s.healthCheck, { intervalMs: 5_000, timeoutMs: 2_000, path: '/healthz', maxFails: 3, failTimeoutMs: 30_000 });
    assert.equal(s.logLevel, 'debug');
    assert.equal(s.reusePort, true);
    assert.deepEqual(s.admin, { host: '127.0.0.1', port: 9100 });
    assert.deepEqual(s.cache, { dir: path.join(dir, 'cache-dir'), maxBytes: 2 * 1024 ** 3, cookies: false, staleIfErrorMs: 30_000, targeted: 'Aludel-Cache-Control' });
    assert.deepEqual(s.upstreams[0], {
      url: 'https://[fd00::5]:8443',
      protocol: 'https',
      host: 'fd00::5',
      port: 8443,
      tls: {
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.3',
        ciphers: 'DEFAULT:@SECLEVEL=0',
        caFile: ca,
        caPem: fs.readFileSync(ca),
        fingerprint256: null,
        verify: true,
        servername: 'legacy.example',
      },
    });
    assert.deepEqual(s.upstreams[1], { url: 'http://app.internal', protocol: 'http', host: 'app.internal', port: 80, tls: null });
  });

  test('JSON, with `to` as a single string and sizes as plain numbers of bytes', async () => {
    const file = configFile('proxy.json', JSON.stringify({ cert, key, to: 'https://origin.example', 'max-header-size': 8192, 'upstream-fingerprint': FP }));
    const s = await resolveProxySettings('http', { config: file });
    assert.equal(s.maxHeaderSize, 8192);
    assert.equal(s.upstreams.length, 1);
    assert.equal(s.upstreams[0]!.port, 443);
    assert.equal(s.upstreams[0]!.tls?.fingerprint256, FP_NORMAL);
  });

  test('an empty YAML file is no settings, not an error', async () => {
    const s = await resolveProxySettings('http', { ...minimal(), config: configFile('empty.yml', '') });
    assert.equal(s.connectTimeoutMs, 5_000);
  });
});

describe('flags over file', () => {
  test('a flag wins per setting; --to replaces the whole list; commander defaults do not mask the file', async () => {
    const file = configFile(
      'base.yaml',
      ['listen: 127.0.0.1:7443', 'cert: cert.pem', 'key: key.pem', 'to: [http://10.0.0.1:80, http://10.0.0.2:80]', 'connect-timeout: 2s', 'log-level: warn'].join('\n'),
    );
    const s = await fromArgv('http', ['--config', file, '--connect-timeout', '7s', '--to', 'http://10.0.0.9:8080']);
    assert.equal(s.connectTimeoutMs, 7_000);
    assert.deepEqual(s.upstreams.map((u) => u.url), ['http://10.0.0.9:8080']);
    // Not given on the command line: the file's value, not the built-in default.
    assert.deepEqual(s.listen, [{ host: '127.0.0.1', port: 7443 }]);
    assert.equal(s.logLevel, 'warn');
    assert.equal(s.offload, 'auto');
  });

  test('--to is repeatable and variadic', async () => {
    const s = await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://a.internal', 'http://b.internal', '--to', 'https://c.internal']);
    assert.deepEqual(s.upstreams.map((u) => `${u.protocol} ${u.host}:${u.port}`), ['http a.internal:80', 'http b.internal:80', 'https c.internal:443']);
  });

  test('aludel tcp has no HTTP-only flags', async () => {
    await assert.rejects(
      fromArgv('tcp', ['--listen', ':9993', '--cert', cert, '--key', key, '--to', 'db:5432', '--trust-forwarded']),
      (err: unknown) => err instanceof CommanderError && err.code === 'commander.unknownOption',
    );
    const s = await fromArgv('tcp', ['--listen', ':9993', '--cert', cert, '--key', key, '--to', 'db:5432', '--idle-timeout', '5m']);
    assert.equal(s.idleTimeoutMs, 300_000);
  });

  test('--offload-policy on both commands, default "default"', async () => {
    const tcp = await fromArgv('tcp', ['--listen', ':9993', '--cert', cert, '--key', key, '--to', 'db:5432', '--offload-policy', 'prefer-hw']);
    assert.equal(tcp.offloadPolicy, 'prefer-hw');
    assert.equal((await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://a.internal'])).offloadPolicy, 'default');
    await rejectsWith(fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://a.internal', '--offload-policy', 'hw']), '--offload-policy: expected default or prefer-hw');
  });
});

describe('upstream URLs', () => {
  const first = async (mode: 'http' | 'tcp', to: string) =>
    (await resolveProxySettings(mode, { cert, key, listen: '127.0.0.1:0', to: [to] })).upstreams[0]!;

  test('http and https default ports, explicit ports, IPv6 without brackets', async () => {
    assert.equal((await first('http', 'http://app.internal')).port, 80);
    assert.equal((await first('http', 'http://app.internal/')).port, 80);
    assert.equal((await first('http', 'https://app.internal')).port, 443);
    assert.equal((await first('http', 'http://app.internal:443')).port, 443);
    assert.deepEqual(await first('http', 'http://[::1]:8080'), { url: 'http://[::1]:8080', protocol: 'http', host: '::1', port: 8080, tls: null });
    assert.equal((await first('http', 'HTTP://App.Internal:81')).host, 'app.internal');
  });

  test('tcp: HOST:PORT or tcp://HOST:PORT, port required', async () => {
    assert.deepEqual(await first('tcp', '[::1]:5432'), { url: '[::1]:5432', protocol: 'tcp', host: '::1', port: 5432, tls: null });
    assert.deepEqual(await first('tcp', 'tcp://DB.internal:5432'), { url: 'tcp://DB.internal:5432', protocol: 'tcp', host: 'db.internal', port: 5432, tls: null });
    await rejectsWith(first('tcp', 'db.internal'), '--to', 'a port is required', '"db.internal"');
    await rejectsWith(first('tcp', 'tcp://db.internal'), '--to', 'a port is required');
  });

  test('bad schemes, paths, credentials, ports', async () => {
    await rejectsWith(first('http', 'ftp://files.internal'), '--to', 'unsupported scheme ftp://', '"ftp://files.internal"');
    await rejectsWith(first('http', 'app.internal:8080'), '--to', 'expected http://HOST[:PORT] or https://HOST[:PORT]');
    await rejectsWith(first('http', 'http://app.internal/api'), '--to', 'without a path');
    await rejectsWith(first('http', 'http://user:pw@app.internal'), '--to', 'credentials');
    await rejectsWith(first('http', 'http://app.internal:0'), '--to', 'port 0');
    await rejectsWith(first('http', 'http://app.internal:70000'), '--to', 'expected http://');
    await rejectsWith(first('tcp', 'db:99999'), '--to', 'expected HOST:PORT');
  });

  test('http and tcp upstreams do not mix: each command takes only its own', async () => {
    await rejectsWith(first('http', 'tcp://db.internal:5432'), '--to', 'a tcp:// upstream belongs to aludel tcp');
    await rejectsWith(first('tcp', 'http://app.internal:80'), '--to', 'an http:// upstream belongs to aludel proxy');
    const file = configFile('mixed.yaml', 'to:\n  - http://app.internal\n  - tcp://db.internal:5432\n');
    await rejectsWith(resolveProxySettings('http', { cert, key, config: file }), `config ${file}: to[1]: aludel proxy forwards HTTP; a tcp:// upstream belongs to aludel tcp`);
  });

  test('the same upstream twice is an error', async () => {
    await rejectsWith(resolveProxySettings('http', { cert, key, to: ['http://a.internal', 'http://A.internal:80/'] }), '--to: http://A.internal:80/ is listed twice');
  });
});

describe('fingerprints', () => {
  test('normalised to node fingerprint256 form from any case, with or without colons, or openssl output', () => {
    assert.equal(normaliseFingerprint(FP), FP_NORMAL);
    assert.equal(normaliseFingerprint(FP.toUpperCase()), FP_NORMAL);
    assert.equal(normaliseFingerprint(FP_NORMAL.toLowerCase()), FP_NORMAL);
    assert.equal(normaliseFingerprint(`sha256 Fingerprint=${FP_NORMAL}`), FP_NORMAL);
    assert.equal(normaliseFingerprint('ab'.repeat(31)), null);
    assert.equal(normaliseFingerprint('zz'.repeat(32)), null);
  });

  test('--upstream-fingerprint reaches every https upstream; SHA-1 gets advice', async () => {
    const s = await resolveProxySettings('http', { cert, key, to: ['https://a.internal', 'http://b.internal'], upstreamFingerprint: FP_NORMAL.toLowerCase() });
    assert.equal(s.upstreams[0]!.tls?.fingerprint256, FP_NORMAL);
    assert.equal(s.upstreams[1]!.tls, null);
    await rejectsWith(resolveProxySettings('http', { cert, key, to: ['https://a.internal'], upstreamFingerprint: 'ab'.repeat(20) }), '--upstream-fingerprint', 'SHA-1', '-sha256');
  });
});

describe('errors name the flag or the file and key', () => {
  test('a bad value in the file: file, key, what was expected and what was given', async () => {
    const file = configFile('bad-duration.yaml', 'connect-timeout: five\n');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: file }), `config ${file}: connect-timeout: expected a duration like 500ms, 5s, 2m (got "five")`);
  });

  test('the same bad value on the command line names the flag', async () => {
    await rejectsWith(fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://a.internal', '--connect-timeout', 'five']), '--connect-timeout: expected a duration', '(got "five")');
  });

  test('plain numbers as durations are refused with advice (seconds or milliseconds?)', async () => {
    const file = configFile('numbers.yaml', 'idle-timeout: 30\n');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: file }), `config ${file}: idle-timeout:`, 'ambiguous', '"30s"', '(got 30)');
  });

  test('unknown keys, with a suggestion, and every problem of a file at once', async () => {
    const file = configFile('typos.yaml', 'conect-timeout: 5s\nconnectTimeout: 5s\nlog-level: loud\nreuse-port: yes\nbanana: 1\n');
    await assert.rejects(resolveProxySettings('http', { ...minimal(), config: file }), (err: unknown) => {
      assert.ok(err instanceof InvalidOptionError);
      const lines = err.message.split('\n').sort();
      assert.deepEqual(lines, [
        `config ${file}: log-level: expected fatal, error, warn, info, debug, trace or silent (got "loud")`,
        // YAML 1.2: `yes` is a string, not a boolean.
        `config ${file}: reuse-port: expected true or false (got "yes")`,
        `config ${file}: unknown setting 'banana'`,
        `config ${file}: unknown setting 'conect-timeout' (did you mean 'connect-timeout'?)`,
        `config ${file}: unknown setting 'connectTimeout' (did you mean 'connect-timeout'?)`,
      ]);
      return true;
    });
  });

  test('a YAML merge key is refused as such, not as an unknown setting', async () => {
    const file = configFile('merge.yaml', 'base: &b\n  connect-timeout: 5s\n<<: *b\n');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: file }), `config ${file}: '<<' (a YAML merge key) is not supported`);
  });

  test('an HTTP-only key in an aludel tcp config says so', async () => {
    const file = configFile('tcp.yaml', 'listen: :9993\nto: db:5432\ntrust-forwarded: true\n');
    await rejectsWith(resolveProxySettings('tcp', { cert, key, config: file }), `config ${file}: trust-forwarded: applies to aludel proxy (HTTP) only`);
  });

  test('--upstream-insecure conflicts with --upstream-ca and --upstream-fingerprint', async () => {
    const flags = { cert, key, to: ['https://a.internal'], upstreamInsecure: true };
    await rejectsWith(resolveProxySettings('http', { ...flags, upstreamCa: ca }), '--upstream-insecure', '--upstream-ca', 'remove one of them');
    await rejectsWith(resolveProxySettings('http', { ...flags, upstreamFingerprint: FP }), '--upstream-insecure', '--upstream-fingerprint');
    const file = configFile('insecure.yaml', 'upstream-insecure: true\n');
    await rejectsWith(resolveProxySettings('http', { ...flags, upstreamInsecure: undefined, upstreamCa: ca, config: file }), `upstream-insecure in config ${file}`, '--upstream-ca');
    const s = await resolveProxySettings('http', flags);
    assert.equal(s.upstreams[0]!.tls?.verify, false);
  });

  test('upstream TLS settings without an https upstream', async () => {
    for (const [flag, value] of [
      ['upstreamTlsMin', '1.0'],
      ['upstreamCiphers', 'DEFAULT'],
      ['upstreamCa', ca],
      ['upstreamFingerprint', FP],
      ['upstreamInsecure', true],
      ['upstreamServername', 'a.example'],
    ] as const) {
      const dashed = `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      await rejectsWith(resolveProxySettings('http', { ...minimal(), [flag]: value }), `${dashed}: no https:// upstream to apply it to`);
    }
  });

  test('TLS ranges: min above max; client versions below 1.2 refused', async () => {
    await rejectsWith(resolveProxySettings('http', { ...minimal(), tlsMin: '1.3', tlsMax: '1.2' }), '--tls-min TLSv1.3 is above --tls-max TLSv1.2');
    const file = configFile('range.yaml', 'tls-min: 1.3\n');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), tlsMax: '1.2', config: file }), `tls-min in config ${file} TLSv1.3 is above --tls-max TLSv1.2`);
    await rejectsWith(
      resolveProxySettings('http', { cert, key, to: ['https://a.internal'], upstreamTlsMin: '1.2', upstreamTlsMax: '1.1' }),
      '--upstream-tls-min TLSv1.2 is above --upstream-tls-max TLSv1.1',
    );
    await rejectsWith(resolveProxySettings('http', { ...minimal(), tlsMin: '1.1' }), '--tls-min: expected 1.2 or 1.3', 'retire');
  });

  test('required settings name both the flag and the config key', async () => {
    await rejectsWith(resolveProxySettings('http', { to: ['http://a.internal'] }), '--cert is required', 'cert: in a --config file', '--key is required');
    await rejectsWith(resolveProxySettings('http', { cert, key }), '--to is required');
  });

  test('files are checked before anything starts, naming the flag or key', async () => {
    const missing = path.join(dir, 'missing.pem');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cert: missing }), `--cert: ${missing}: no such file`);
    await rejectsWith(resolveProxySettings('http', { ...minimal(), key: dir }), `--key: ${dir}: not a regular file`);
    const file = configFile('missing-ca.yaml', 'upstream-ca: nope/ca.pem\n');
    await rejectsWith(
      resolveProxySettings('http', { cert, key, to: ['https://a.internal'], config: file }),
      `config ${file}: upstream-ca: ${path.join(dir, 'nope', 'ca.pem')}: no such file`,
    );
  });

  test('the config file itself: missing, unknown format, bad syntax, not a mapping', async () => {
    const missing = path.join(dir, 'nope.yaml');
    await rejectsWith(resolveProxySettings('http', { config: missing }), `--config ${missing}: no such file`);
    await rejectsWith(resolveProxySettings('http', { config: configFile('proxy.toml', 'a = 1') }), 'proxy.toml: unknown format ".toml"', '.yaml, .yml or .json');
    await rejectsWith(resolveProxySettings('http', { config: configFile('broken.json', '{"cert": ') }), 'broken.json: not valid JSON');
    await rejectsWith(resolveProxySettings('http', { config: configFile('broken.yaml', 'to: [a\nb: c: d\n') }), 'broken.yaml: not valid YAML');
    await rejectsWith(resolveProxySettings('http', { config: configFile('dup.yaml', 'cert: a\ncert: b\n') }), 'dup.yaml: not valid YAML');
    await rejectsWith(resolveProxySettings('http', { config: configFile('list.yaml', '- cert\n- key\n') }), 'list.yaml: expected a mapping of settings', 'got a list');
  });

  test('values out of range', async () => {
    await rejectsWith(resolveProxySettings('http', { ...minimal(), handshakeTimeout: '0s' }), '--handshake-timeout: must be more than 0');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), idleTimeout: '1000h' }), '--idle-timeout: must be at most 596h');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), maxHeaderCount: '0' }), '--max-header-count: expected a whole number of at least 1');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), maxHeaderSize: 'big' }), '--max-header-size: expected a size');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), listen: 'localhost:8443' }), '--listen: expected ADDRESS:PORT');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), offload: 'gpu' }), '--offload: expected auto, kernel or userspace');
    await rejectsWith(resolveProxySettings('tcp', { cert, key, listen: ':9993', to: ['db:5432'], offloadPolicy: 'nic' }), '--offload-policy: expected default or prefer-hw', '"nic"');
    await rejectsWith(resolveProxySettings('http', { cert, key, to: ['https://a.internal'], upstreamServername: '10.0.0.1' }), '--upstream-servername: an IP address cannot be sent as SNI');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), healthCheckInterval: '5s', healthCheckPath: 'health' }), '--health-check-path: expected a path like /health');
    assert.equal((await resolveProxySettings('http', { ...minimal(), maxBodySize: '0' })).maxBodySize, null, 'nginx client_max_body_size 0 = no limit');
  });

  test('--admin: a bare port is loopback; an address is taken as given; aludel tcp has it too', async () => {
    assert.deepEqual(parseFlag(adminAddress, '--admin', '9100'), { host: '127.0.0.1', port: 9100 });
    assert.deepEqual(parseFlag(adminAddress, '--admin', ':9100'), { host: '127.0.0.1', port: 9100 }, 'unlike --listen :8443, not every address');
    assert.deepEqual(parseFlag(adminAddress, '--admin', '0.0.0.0:9100'), { host: '0.0.0.0', port: 9100 });
    assert.deepEqual(parseFlag(adminAddress, '--admin', '[::1]:0'), { host: '::1', port: 0 });
    for (const bad of ['localhost:9100', '70000', '127.0.0.1', '']) {
      assert.throws(() => parseFlag(adminAddress, '--admin', bad), (e: unknown) => e instanceof InvalidOptionError && e.message.startsWith('--admin: expected PORT (binds 127.0.0.1) or ADDRESS:PORT'), bad);
    }
    assert.deepEqual((await fromArgv('tcp', ['--listen', ':9993', '--cert', cert, '--key', key, '--to', '127.0.0.1:6379', '--admin', '[::1]:9101'])).admin, { host: '::1', port: 9101 });
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: configFile('admin.yaml', 'admin: public\n') }), 'admin: expected PORT (binds 127.0.0.1)', '(got "public")');
  });

  test('parseFlag: one schema for one flag (what serve can use)', () => {
    assert.equal(parseFlag(tlsVersion, '--tls-min', 'TLSv1.2'), 'TLSv1.2');
    assert.equal(parseFlag(offloadMode, '--offload', 'kernel'), 'kernel');
    assert.equal(parseFlag(offloadPolicy, '--offload-policy', 'prefer-hw'), 'prefer-hw');
    assert.throws(() => parseFlag(tlsVersion, '--tls-min', '1.1'), (e: unknown) => e instanceof InvalidOptionError && e.message.startsWith('--tls-min: expected 1.2 or 1.3'));
  });

  test('--cache: default size 10 GiB; --cache-size alone has no effect; sizes must be positive', async () => {
    assert.deepEqual((await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://127.0.0.1:8080', '--cache', '/var/cache/aludel'])).cache, { dir: '/var/cache/aludel', maxBytes: 10 * 1024 ** 3, cookies: false, staleIfErrorMs: 0, targeted: null });
    assert.equal((await resolveProxySettings('http', { ...minimal(), cache: 'c', cacheCookies: true })).cache?.cookies, true);
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cacheCookies: true }), '--cache-cookies: has no effect without a cache');
    assert.equal((await resolveProxySettings('http', { ...minimal(), cache: 'c', cacheSize: '512m' })).cache?.maxBytes, 512 * 1024 ** 2);
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cacheSize: '1g' }), '--cache-size: has no effect without a cache');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cache: 'c', cacheSize: '0' }), '--cache-size: must be more than 0');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cache: 'c', cacheSize: 'lots' }), '--cache-size: expected a size');
    await assert.rejects(fromArgv('tcp', ['--listen', ':1', '--cert', cert, '--key', key, '--to', '127.0.0.1:1', '--cache', 'c']), CommanderError);
  });

  test('--cache-stale-if-error: a duration, 0 (off) by default, only with a cache', async () => {
    assert.equal((await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://127.0.0.1:8080', '--cache', 'c', '--cache-stale-if-error', '10m'])).cache?.staleIfErrorMs, 600_000);
    assert.equal((await resolveProxySettings('http', { ...minimal(), cache: 'c', cacheStaleIfError: '0' })).cache?.staleIfErrorMs, 0);
    assert.equal((await resolveProxySettings('http', { ...minimal(), config: configFile('stale.yaml', 'cache: c\ncache-stale-if-error: 90s\n') })).cache?.staleIfErrorMs, 90_000);
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cacheStaleIfError: '1h' }), '--cache-stale-if-error: has no effect without a cache');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cache: 'c', cacheStaleIfError: 'a while' }), '--cache-stale-if-error: expected a duration');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: configFile('stale-number.yaml', 'cache: c\ncache-stale-if-error: 60\n') }), 'cache-stale-if-error: expected a duration', 'a bare number is ambiguous');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: configFile('stale-typo.yaml', 'cache: c\ncache-stale-if-eror: 60s\n') }), "unknown setting 'cache-stale-if-eror' (did you mean 'cache-stale-if-error'?)");
  });

  test('--targeted-cache-control (RFC 9213 §2.1): a field name token, not one the cache reads otherwise, only with a cache', async () => {
    const argv = ['--cert', cert, '--key', key, '--to', 'http://127.0.0.1:8080', '--cache', 'c'];
    assert.equal((await fromArgv('http', [...argv, '--targeted-cache-control', 'Aludel-Cache-Control'])).cache?.targeted, 'Aludel-Cache-Control');
    const file = configFile('targeted.yaml', 'cache: c\ntargeted-cache-control: Edge-Cache-Control\n');
    assert.equal((await resolveProxySettings('http', { ...minimal(), config: file })).cache?.targeted, 'Edge-Cache-Control');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), targetedCacheControl: 'Aludel-Cache-Control' }), '--targeted-cache-control: has no effect without a cache');
    for (const bad of ['Aludel Cache Control', 'X:Y', '', 'Aludel-Cache-Control,CDN']) {
      await rejectsWith(resolveProxySettings('http', { ...minimal(), cache: 'c', targetedCacheControl: bad }), '--targeted-cache-control: expected a header field name');
    }
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cache: 'c', targetedCacheControl: 'cache-control' }), '--targeted-cache-control: cannot be cache-control: it is the field targeted fields override');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), cache: 'c', targetedCacheControl: 'CDN-Cache-Control' }), 'cannot be CDN-Cache-Control: CDN-Cache-Control is always honoured');
    for (const taken of ['Expires', 'pragma', 'Age', 'Vary', 'Cache-Status']) {
      await rejectsWith(resolveProxySettings('http', { ...minimal(), cache: 'c', targetedCacheControl: taken }), `--targeted-cache-control: cannot be ${taken}`);
    }
    const typo = configFile('targeted-typo.yaml', 'cache: c\ntarget-cache-control: A-Cache-Control\n');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: typo }), "unknown setting 'target-cache-control' (did you mean 'targeted-cache-control'?)");
    await assert.rejects(fromArgv('tcp', ['--listen', ':1', '--cert', cert, '--key', key, '--to', '127.0.0.1:1', '--targeted-cache-control', 'A']), CommanderError);
  });

  test('--workers N|auto (issue 17): auto, the default, is the CPUs this process may use; 0, 1025 and words refused', async () => {
    const cpus = os.availableParallelism();
    const workers = (s: { workers: number; workersAuto: boolean }): [number, boolean] => [s.workers, s.workersAuto];
    // No flag, no config key: auto, for each command.
    assert.deepEqual(workers(await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://127.0.0.1:8080'])), [cpus, true]);
    assert.deepEqual(workers(await fromArgv('tcp', ['--listen', ':9993', '--cert', cert, '--key', key, '--to', '127.0.0.1:6379'])), [cpus, true]);
    assert.deepEqual(workers(await resolveServeSettings({ cert, key, root: dir })), [cpus, true]);
    // auto given: the same.
    assert.deepEqual(workers(await resolveProxySettings('http', { ...minimal(), workers: 'auto' })), [cpus, true]);
    assert.deepEqual(workers(await fromArgv('tcp', ['--listen', ':9993', '--cert', cert, '--key', key, '--to', '127.0.0.1:6379', '--workers', 'auto'])), [cpus, true]);
    assert.deepEqual(workers(await resolveServeSettings({ cert, key, root: dir, config: configFile('wa.yaml', 'workers: auto\n') })), [cpus, true]);
    // A number given: that number, not auto (1 = one process, as before).
    assert.deepEqual(workers(await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://127.0.0.1:8080', '--workers', '1'])), [1, false]);
    assert.deepEqual(workers(await resolveServeSettings({ cert, key, root: dir, workers: '1' })), [1, false]);
    assert.deepEqual(workers(await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://127.0.0.1:8080', '--workers', '3'])), [3, false]);
    assert.deepEqual(workers(await resolveServeSettings({ cert, key, root: dir, config: configFile('w.yaml', 'workers: 2\n') })), [2, false]);
    // The flag wins over the config file, both ways.
    assert.deepEqual(workers(await resolveServeSettings({ cert, key, root: dir, workers: '1', config: configFile('wa2.yaml', 'workers: auto\n') })), [1, false]);
    assert.deepEqual(workers(await resolveServeSettings({ cert, key, root: dir, workers: 'auto', config: configFile('w1.yaml', 'workers: 1\n') })), [cpus, true]);
    for (const bad of ['0', '1025', 'many', '1.5']) {
      await rejectsWith(resolveProxySettings('http', { ...minimal(), workers: bad }), '--workers: expected a whole number from 1 to 1024, or auto', `"${bad}"`);
    }
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: configFile('w0.yaml', 'workers: 0\n') }), 'workers: expected a whole number from 1 to 1024');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: configFile('wk.yaml', 'worker: 2\n') }), "unknown setting 'worker' (did you mean 'workers'?)");
  });

  test('--workers N with --cache: one cache shared by the workers (issue 17), from flags or the config file', async () => {
    const flags = await resolveProxySettings('http', { ...minimal(), cache: 'c', workers: '2' });
    assert.equal(flags.workers, 2);
    assert.equal(flags.cache?.dir, 'c');
    const config = await resolveProxySettings('http', { ...minimal(), config: configFile('wc.yaml', 'workers: 4\ncache: c\n') });
    assert.equal(config.workers, 4);
    assert.ok(config.cache !== null);
    assert.equal((await resolveProxySettings('http', { ...minimal(), cache: 'c', workers: '1' })).workers, 1);
  });

  test('--ticket-keys: repeatable, config list; 80 or 48 bytes, else the size and how to make one', async () => {
    const k80 = path.join(dir, 'ticket80.key');
    const k48 = path.join(dir, 'ticket48.key');
    const k32 = path.join(dir, 'ticket32.key');
    fs.writeFileSync(k80, Buffer.alloc(80, 1), { mode: 0o600 });
    fs.writeFileSync(k48, Buffer.alloc(48, 2), { mode: 0o600 });
    fs.writeFileSync(k32, Buffer.alloc(32, 3), { mode: 0o600 });
    assert.deepEqual((await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://127.0.0.1:8080', '--ticket-keys', k80, '--ticket-keys', k48])).ticketKeyFiles, [k80, k48]);
    assert.deepEqual((await resolveServeSettings({ cert, key, root: dir, config: configFile('tk.yaml', 'ticket-keys: [ticket80.key, ticket48.key]\n') })).ticketKeyFiles, [k80, k48]);
    await rejectsWith(resolveProxySettings('http', { ...minimal(), ticketKeys: [k32] }), `--ticket-keys: ${k32}: 32 bytes; a session ticket key file has exactly 80 bytes (or 48`, 'openssl rand 80');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), ticketKeys: [path.join(dir, 'absent.key')] }), '--ticket-keys:', 'absent.key: no such file');
  });

  test('health check settings that cannot take effect', async () => {
    await rejectsWith(resolveProxySettings('http', { ...minimal(), healthCheckPath: '/health' }), '--health-check-path: has no effect without active health checks');
    await rejectsWith(
      resolveProxySettings('http', { ...minimal(), healthCheckInterval: '2s', healthCheckTimeout: '2s' }),
      '--health-check-timeout: must be shorter than --health-check-interval',
    );
  });
});

describe('several listen addresses (issue 13)', () => {
  test('--listen repeated, or a list in the config file; each address once', async () => {
    const s = await fromArgv('http', ['--cert', cert, '--key', key, '--to', 'http://127.0.0.1:8080', '--listen', '127.0.0.1:8443', '--listen', '[::1]:8443']);
    assert.deepEqual(s.listen, [{ host: '127.0.0.1', port: 8443 }, { host: '::1', port: 8443 }]);
    const file = configFile('two.yaml', `listen: [127.0.0.1:9443, "[::1]:9443"]\ncert: ${cert}\nkey: ${key}\nto: http://127.0.0.1:8080\n`);
    assert.equal((await resolveProxySettings('http', { config: file })).listen.length, 2);
    await rejectsWith(resolveProxySettings('http', { ...minimal(), listen: ['127.0.0.1:8443', '127.0.0.1:8443'] }), '--listen: 127.0.0.1:8443 is listed twice');
  });
});

describe('several certificates (issue 13)', () => {
  test('--cert/--key pairs in order, or lists in the config file; counts must match', async () => {
    const s = await fromArgv('http', ['--cert', cert, '--key', key, '--cert', ca, '--key', key, '--to', 'http://127.0.0.1:8080']);
    assert.deepEqual(s.certificates, [{ certFile: cert, keyFile: key }, { certFile: ca, keyFile: key }]);
    const file = configFile('certs.yaml', `cert: [${path.basename(cert)}, ${path.basename(ca)}]\nkey: [${path.basename(key)}, ${path.basename(key)}]\nto: http://127.0.0.1:8080\n`);
    assert.deepEqual((await resolveProxySettings('http', { config: file })).certificates, [{ certFile: path.join(path.dirname(file), path.basename(cert)), keyFile: path.join(path.dirname(file), path.basename(key)) }, { certFile: path.join(path.dirname(file), path.basename(ca)), keyFile: path.join(path.dirname(file), path.basename(key)) }]);
    await rejectsWith(resolveProxySettings('http', { cert: [cert, ca], key: [key], to: ['http://127.0.0.1:8080'] }), '--cert names 2 certificate(s) and --key 1 key(s): give one key per certificate, in the same order');
  });
});

describe('aludel serve shares the settings path (issue 13)', () => {
  const root = (): string => path.dirname(cert);
  test('the checks proxy has: levels, TLS range, required root, readable directory', async () => {
    await rejectsWith(resolveServeSettings({ cert, key, root: root(), logLevel: 'verbose' }), '--log-level: expected');
    await rejectsWith(resolveServeSettings({ cert, key, root: root(), tlsMin: '1.3', tlsMax: '1.2' }), '--tls-min TLSv1.3 is above --tls-max TLSv1.2');
    await rejectsWith(resolveServeSettings({ cert, key }), '--root is required');
    await rejectsWith(resolveServeSettings({ cert, key, root: cert }), `--root: ${cert}: not a directory`);
    await rejectsWith(resolveServeSettings({ cert, key, root: root(), accessLogFormat: 'apache' }), '--access-log-format: expected json or combined');
  });

  test('--config for serve, relative paths from the file, flags win; proxy keys refused by name', async () => {
    const file = configFile('serve.yaml', `cert: ${path.basename(cert)}\nkey: ${path.basename(key)}\nroot: .\nidle-timeout: 5s\naccess-log: access.log\naccess-log-format: combined\n`);
    const s = await resolveServeSettings({ config: file, idleTimeout: '7s' });
    assert.equal(s.root, path.dirname(file));
    assert.equal(s.idleTimeoutMs, 7000);
    assert.deepEqual(s.accessLog, { file: path.join(path.dirname(file), 'access.log'), format: 'combined', off: false });
    // access-log: off is nginx's access_log off, not a file named off beside the config; ./off is that file.
    const off = configFile('serve-off.yaml', `cert: ${path.basename(cert)}\nkey: ${path.basename(key)}\nroot: .\naccess-log: off\n`);
    assert.deepEqual((await resolveServeSettings({ config: off })).accessLog, { file: null, format: 'json', off: true });
    assert.deepEqual((await resolveServeSettings({ cert, key, root: root(), accessLog: 'off' })).accessLog, { file: null, format: 'json', off: true });
    const named = configFile('serve-named-off.yaml', `cert: ${path.basename(cert)}\nkey: ${path.basename(key)}\nroot: .\naccess-log: ./off\n`);
    assert.deepEqual((await resolveServeSettings({ config: named })).accessLog, { file: path.join(path.dirname(named), 'off'), format: 'json', off: false });
    const bad = configFile('serve-bad.yaml', `cert: ${cert}\nkey: ${key}\nroot: .\nto: http://127.0.0.1:8080\n`);
    await rejectsWith(resolveServeSettings({ config: bad }), `config ${bad}: to: applies to aludel proxy and tcp, not to aludel serve`);
  });
});

describe('--acme-domain and the other --acme-* settings (RFC 8555)', () => {
  const to = ['http://127.0.0.1:8080'];

  test('no --cert/--key needed; the managed pairs come first, the given ones after; Let\'s Encrypt by default', async () => {
    const s = await fromArgv('http', ['--acme-domain', 'www.example.com', '--acme-domain', 'Shop.Example.com.', '--acme-storage', '/var/lib/aludel/acme', '--to', to[0]!]);
    assert.deepEqual(s.acme, { domains: ['www.example.com', 'shop.example.com'], directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory', email: null, storage: '/var/lib/aludel/acme', caFile: null, challenge: null });
    assert.deepEqual(s.certificates, [
      { certFile: '/var/lib/aludel/acme/certificates/www.example.com/pair.pem', keyFile: '/var/lib/aludel/acme/certificates/www.example.com/pair.pem', label: '--acme-domain www.example.com, its certificate kept in --acme-storage /var/lib/aludel/acme' },
      { certFile: '/var/lib/aludel/acme/certificates/shop.example.com/pair.pem', keyFile: '/var/lib/aludel/acme/certificates/shop.example.com/pair.pem', label: '--acme-domain shop.example.com, its certificate kept in --acme-storage /var/lib/aludel/acme' },
    ]);
    const both = await resolveProxySettings('http', { ...minimal(), acmeDomain: ['a.example.com'], acmeStorage: '/s' });
    assert.deepEqual(both.certificates.map((c) => c.certFile), ['/s/certificates/a.example.com/pair.pem', cert]);
    const file = configFile('acme.yaml', 'acme-domain: [a.example.com, b.example.com]\nacme-email: ops@example.com\nacme-directory: https://acme-staging-v02.api.letsencrypt.org/directory\nacme-storage: state\nacme-challenge: tls-alpn-01\n');
    const f = await resolveServeSettings({ root: dir, config: file });
    assert.deepEqual(f.acme, { domains: ['a.example.com', 'b.example.com'], directoryUrl: 'https://acme-staging-v02.api.letsencrypt.org/directory', email: 'ops@example.com', storage: path.join(dir, 'state'), caFile: null, challenge: 'tls-alpn-01' });
    assert.equal((await fromArgv('http', ['--acme-domain', 'a.example.com', '--acme-challenge', 'http-01', '--to', to[0]!])).acme?.challenge, 'http-01');
  });

  test('bad values: wildcards (RFC 8555 §7.1.3 needs DNS-01), IP addresses, http:// directories, e-mail lists, a name twice', async () => {
    await rejectsWith(resolveProxySettings('http', { to, acmeDomain: ['*.example.com'] }), '--acme-domain: a wildcard needs the DNS-01 challenge');
    await rejectsWith(resolveProxySettings('http', { to, acmeDomain: ['192.0.2.1'] }), '--acme-domain: certificates for IP addresses are not supported');
    await rejectsWith(resolveProxySettings('http', { to, acmeDomain: ['no_dots'] }), '--acme-domain: expected a fully qualified DNS name');
    await rejectsWith(resolveProxySettings('http', { to, acmeDomain: ['a.example.com'], acmeDirectory: 'http://ca.internal/dir' }), '--acme-directory: expected the https:// URL of an ACME directory');
    await rejectsWith(resolveProxySettings('http', { to, acmeDomain: ['a.example.com'], acmeEmail: 'a@example.com, b@example.com' }), '--acme-email: expected one e-mail address');
    await rejectsWith(resolveProxySettings('http', { to, acmeDomain: ['a.example.com', 'A.example.com'] }), '--acme-domain: a.example.com is listed twice');
    await rejectsWith(resolveProxySettings('http', { to, acmeDomain: ['a.example.com'], acmeChallenge: 'dns-01' }), '--acme-challenge: expected http-01 or tls-alpn-01');
  });

  test('--acme-* without --acme-domain has no effect; --workers > 1 accepted; --acme-ca checked readable; typos get a suggestion', async () => {
    await rejectsWith(resolveProxySettings('http', { ...minimal(), acmeEmail: 'ops@example.com' }), '--acme-email: has no effect without --acme-domain NAME');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), acmeDirectory: 'https://ca.internal/dir' }), '--acme-directory: has no effect without --acme-domain NAME');
    await rejectsWith(resolveProxySettings('http', { ...minimal(), acmeChallenge: 'tls-alpn-01' }), '--acme-challenge: has no effect without --acme-domain NAME');
    // With workers, the primary orders and renews for all of them (docs/acme.md).
    const withWorkers = await resolveProxySettings('http', { to, acmeDomain: ['a.example.com'], workers: '2' });
    assert.equal(withWorkers.workers, 2);
    assert.deepEqual(withWorkers.acme?.domains, ['a.example.com']);
    assert.equal(withWorkers.certificates[0]?.certFile, path.join(withWorkers.acme!.storage, 'certificates', 'a.example.com', 'pair.pem'));
    const missing = path.join(dir, 'no-ca.pem');
    await rejectsWith(resolveProxySettings('http', { to, acmeDomain: ['a.example.com'], acmeCa: missing }), `--acme-ca: ${missing}: no such file`);
    await rejectsWith(resolveProxySettings('http', { ...minimal(), config: configFile('acme-typo.yaml', 'acme-domains: a.example.com\n') }), "unknown setting 'acme-domains' (did you mean 'acme-domain'?)");
    await rejectsWith(resolveProxySettings('tcp', { listen: [':1'], to: ['127.0.0.1:1'], config: configFile('acme-tcp.yaml', 'acme-domain: a.example.com\n') }), 'acme-domain: applies to aludel proxy (HTTP) only');
    await rejectsWith(resolveProxySettings('http', { to, key }), '--key without --cert');
  });
});
