/**
 * The session the OpenSSL probes share (ssl-eof-probe.c, ssl-return-probe.c,
 * run in the kTLS VM): the probe server started under `aludel run` or alone,
 * one TLS 1.2 client (TLS 1.3 where asked) that sends "hello" once the probe has the connection
 * (in the kernel both ways, under run), then the test's own part. What the
 * probe prints is compared under run and alone.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { spawnDaemon, type Daemon } from './daemon.js';
import { connectionsUlp, legacyPath, LEGACY_PREFIX, wrappedPid, type ConnectionUlp } from './legacy.js';
import { freePort } from './loopback-port.js';
import { aludelRun } from './run-origins.js';
import { run } from './run-process.js';
import { delta, hasKernelTls, readTlsStat } from './tls-stat.js';
import { delay } from './wait.js';

/** The legacy OpenSSL a probe is built against. */
export type ProbeLibrary = '1.0.2f' | '1.1.1w';

/** What the probe tests need of the machine: a kernel with TLS, root (sock_diag), and the legacy OpenSSL 1.0.2f. */
export function assertProbeHost(): void {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  assert.equal(process.geteuid?.(), 0, 'the kernel shows TLS ULP state (sock_diag) to CAP_NET_ADMIN only: run as root (the VM does)');
  legacyPath('openssl-1.0.2f');
}

/**
 * Builds the probe `source` as `out` against `lib`: the real 1.0.2f headers
 * and library, or Debian 11's libssl.so.1.1 (OpenSSL 1.1.1w, whose package
 * ships no headers: the system's 3.x headers declare every function the
 * probes call with the same ABI, and their macros expand to calls 1.1.1
 * exports). Returns `out`.
 */
export async function buildProbe(source: string, lib: ProbeLibrary, out: string): Promise<string> {
  let flags: string[];
  if (lib === '1.0.2f') {
    const dir = path.join(LEGACY_PREFIX, 'openssl-1.0.2f');
    flags = [`-I${dir}/include`, `-L${dir}/lib`, `-Wl,-rpath,${dir}/lib`, '-lssl', '-lcrypto'];
  } else {
    legacyPath('openssl-1.1.1w');
    const dir = path.join(LEGACY_PREFIX, 'debian11/root/usr/lib/x86_64-linux-gnu');
    flags = ['-Wno-deprecated-declarations', `-Wl,-rpath,${dir}`, `${dir}/libssl.so.1.1`, `${dir}/libcrypto.so.1.1`];
  }
  const cc = await run('cc', ['-Wall', '-Werror', '-o', out, source, ...flags]);
  assert.equal(cc.code, 0, `building ${path.basename(source)} against OpenSSL ${lib}: ${cc.stderr}`);
  return out;
}

/** Start-up under `aludel run` in the VM: node loading the CLI on the emulated CPU takes seconds. */
const READY_MS = 180_000;
const WAIT_MS = 60_000;

const inKernel = (c: ConnectionUlp): boolean => c.tls !== null && c.tls.txConf !== 'none' && c.tls.rxConf !== 'none';

/** Polls `cond` every 50 ms; rejects after `ms`, naming `what` it waited for. */
export async function waitFor(cond: () => boolean, what: string, ms = WAIT_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out (${ms} ms) waiting for ${what}`);
    await delay(50);
  }
}

export interface ProbeOptions {
  /** The built probe. */
  probe: string;
  /** Its arguments after the port, certificate and key (a mode, say). */
  args?: string[];
  certFile: string;
  keyFile: string;
  underRun: boolean;
  /**
   * The client connects through a relay that flips one bit in the first
   * record of this type the probe sends (21: an alert, its close_notify; 23:
   * application data): the client's OpenSSL cannot authenticate it and
   * answers with a fatal bad_record_mac alert (RFC 5246 §7.2.2), the one way
   * to make a TLS client send the probe a fatal alert. TLS 1.2 records carry
   * their type in the clear, in the kernel's records as in OpenSSL's.
   */
  corruptFirst?: 21 | 23;
  /** The client speaks TLS 1.3 (only): for the calls that exist in TLS 1.3 alone (KeyUpdate, post-handshake authentication). */
  tls13?: boolean;
}

/** A loopback relay to `port` that flips the last bit of the first record of `type` (RFC 5246 §6.2.1) coming back; its port. */
async function corruptingRelay(port: number, type: number): Promise<{ port: number; close(): void }> {
  const sockets: net.Socket[] = [];
  const relay = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.push(client, upstream);
    let seen = Buffer.alloc(0); // records from the probe not yet complete
    let done = false;
    client.on('data', (b: Buffer) => upstream.write(b));
    upstream.on('data', (b: Buffer) => {
      if (!done) {
        const chunk = Buffer.from(b);
        const base = seen.length; // offset of chunk in seen + chunk
        seen = Buffer.concat([seen, chunk]);
        let at = 0;
        while (!done && seen.length - at >= 5 && seen.length - at >= 5 + seen.readUInt16BE(at + 3)) {
          const end = at + 5 + seen.readUInt16BE(at + 3);
          if (seen[at] === type && end - 1 >= base) {
            chunk.writeUInt8(chunk.readUInt8(end - 1 - base) ^ 1, end - 1 - base); // in the AEAD tag: the record fails authentication
            done = true;
          }
          at = end;
        }
        seen = seen.subarray(at);
        b = chunk;
      }
      client.write(b);
    });
    for (const [a, z] of [[client, upstream], [upstream, client]] as const) {
      a.on('end', () => z.end());
      a.on('error', () => z.destroy());
    }
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: (relay.address() as net.AddressInfo).port,
    close: () => {
      for (const x of sockets) x.destroy();
      relay.close();
    },
  };
}

/** The probe and its client, once the probe has read the client's "hello". */
export interface ProbeSession {
  d: Daemon;
  s: tls.TLSSocket;
  tcp: net.Socket;
}

/**
 * Runs `part` on a probe session; resolves with what it returned and the
 * kernel's count of TLS RX contexts made meanwhile (1 under run: the
 * connection was in the kernel). The probe is stopped and the client closed
 * after.
 */
export async function withProbe<T>(o: ProbeOptions, part: (p: ProbeSession) => Promise<T>): Promise<{ result: T; tlsRxSw: number }> {
  const port = await freePort();
  const cmd = [...(o.underRun ? aludelRun() : []), o.probe, String(port), o.certFile, o.keyFile, ...(o.args ?? [])];
  const d: Daemon = spawnDaemon(cmd[0]!, cmd.slice(1));
  const before = readTlsStat();
  let s: tls.TLSSocket | undefined;
  const relay = o.corruptFirst !== undefined ? await corruptingRelay(port, o.corruptFirst) : null;
  try {
    await waitFor(() => d.output().includes('listening\n') || !d.alive(), 'the probe to listen', READY_MS);
    const tcp = net.connect(relay?.port ?? port, '127.0.0.1');
    const client = tls.connect({ socket: tcp, ca: fs.readFileSync(o.certFile), servername: 'localhost', ...(o.tls13 === true ? { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } : { maxVersion: 'TLSv1.2' }) });
    s = client;
    client.on('error', () => undefined); // the probe may end the connection first
    await new Promise<void>((resolve, reject) => {
      client.once('secureConnect', () => resolve());
      client.once('error', reject);
    });
    await waitFor(() => d.output().includes('handshake\n'), 'the handshake');
    if (o.underRun) {
      const pid = wrappedPid(d.child.pid!);
      await waitFor(() => connectionsUlp(pid).some(inKernel), "the probe's connection in the kernel both ways");
    }
    client.write('hello');
    await waitFor(() => d.output().includes('read 5\n'), 'the probe to read the 5 bytes');
    const result = await part({ d, s: client, tcp });
    return { result, tlsRxSw: delta(before, readTlsStat()).TlsRxSw! };
  } finally {
    s?.destroy();
    relay?.close();
    await d.stop();
  }
}
