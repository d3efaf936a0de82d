/**
 * One connection to an upstream, whatever it speaks: plain TCP on our own fd
 * (bodies may leave it by splice), TLS on the addon with kTLS both ways (read
 * and written as a plain socket, so bodies splice too: src/tls/upstream-client.ts),
 * or TLS through node:tls where kTLS cannot be had (legacy origins may need
 * TLS 1.0 and CBC suites, which the system OpenSSL context of the client side
 * must never offer). The proxy reads and writes through this
 * interface only.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Native } from '../native/binding.js';
import type { Upstream } from '../config/proxy-settings.js';
import { UpstreamCertificateError } from '../errors.js';
import { PlainSocket } from '../transport/plain-socket.js';
import { StreamSource, type PulledStream } from '../transport/stream-source.js';
import { SslUpstream } from './ssl-upstream.js';
import type { UpstreamTlsContexts } from '../tls/upstream-client.js';

export interface UpstreamStream {
  /** The next bytes, or null at the upstream's end of stream. */
  read(): Promise<Buffer | null>;
  /** The next bytes into `buf`: how many, 0 at the end of stream (plain sockets; others read()). */
  readInto?(buf: Buffer): Promise<number>;
  write(buf: Buffer): Promise<void>;
  /** Half-close: our side is done sending. */
  endWrite(): void;
  destroy(err?: Error): void;
  readonly destroyed: boolean;
  /** While an operation waits longer than `ms`, destroy with `error()`. */
  setIdleTimeout(ms: number, error: () => Error): void;
  /** The plain socket, when the body can be spliced out of it; null for TLS. */
  readonly plain: PlainSocket | null;
  /**
   * For the copy path from a stream that decrypts in user space (node:tls):
   * its bytes, starting with `first` (body bytes that came with the head).
   */
  streamSource?(first: Buffer): StreamSource;
  /**
   * For a pooled idle connection: false when it was closed or sent something
   * unasked. `quietEnough`: readiness having reported nothing since the
   * connection went idle is proof enough (no recv); for a request that can be
   * sent again when the connection turns out dead after all (see Forwarder).
   */
  isIdleAlive(quietEnough?: boolean): boolean;
  /**
   * Once an answer has been read to its framing's end: what waits on the
   * connection behind it (see Forwarder.endsAtAnswer). 'bytes': the peer sent
   * more than it framed; 'closed': its FIN (or an error); 'quiet': nothing.
   */
  afterAnswer(): 'quiet' | 'bytes' | 'closed';
  /**
   * The connection goes idle in the pool (quietEnough in isIdleAlive()
   * counts from here); `onStir(this)` is called once when the peer sends
   * something or closes meanwhile, as far as readiness sees it.
   */
  watchIdle?(onStir: (stream: UpstreamStream) => void): void;
}

export interface ConnectUpstreamOptions {
  /** null: the addon is unavailable; plain upstreams then go through node:net (no splice). */
  native: Native | null;
  upstream: Upstream;
  timeoutMs: number;
  onTimeout: () => Error;
  /** TLS upstreams on the system OpenSSL (kTLS where the kernel takes it, else user space); null: node:tls only. */
  systemTls: UpstreamTlsContexts | null;
}

class PlainUpstream implements UpstreamStream {
  readonly plain: PlainSocket;
  constructor(sock: PlainSocket) {
    this.plain = sock;
  }
  read(): Promise<Buffer | null> { return this.plain.read(); }
  readInto(buf: Buffer): Promise<number> { return this.plain.readInto(buf); }
  write(buf: Buffer): Promise<void> { return this.plain.write(buf); }
  endWrite(): void { this.plain.endWrite(); }
  destroy(err?: Error): void { this.plain.destroy(err); }
  get destroyed(): boolean { return this.plain.destroyed; }
  setIdleTimeout(ms: number, error: () => Error): void { this.plain.setIdleTimeout(ms, error); }
  isIdleAlive(quietEnough = false): boolean { return this.plain.idleAlive(quietEnough); }
  afterAnswer(): 'quiet' | 'bytes' | 'closed' { return this.plain.afterAnswer(); }
  watchIdle(onStir: (stream: UpstreamStream) => void): void { this.plain.watchIdle(onStir as (arg: unknown) => void, this); }
}

/**
 * A node socket (node:tls for TLS upstreams; node:net for plain ones when the
 * addon is unavailable), read in paused mode (socket.read()) so bytes wait in
 * the socket until the proxy asks for them.
 */
class SocketUpstream implements UpstreamStream, PulledStream {
  readonly plain = null;
  private readonly socket: net.Socket;
  private finished = false;
  private failed: Error | null = null;
  private wake: (() => void) | null = null;
  private idleMs = 0;
  private idleError: (() => Error) | null = null;

  constructor(socket: net.Socket) {
    this.socket = socket;
    const notify = (): void => {
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    socket.on('readable', notify);
    socket.on('end', () => { this.finished = true; notify(); });
    socket.on('error', (err) => { this.failed ??= err; notify(); });
    socket.on('close', () => { this.finished = true; notify(); });
    socket.on('timeout', () => socket.destroy(this.idleError?.() ?? new Error('upstream idle timeout')));
  }

  async read(): Promise<Buffer | null> {
    for (;;) {
      const chunk = this.pull();
      if (chunk !== null) return chunk;
      if (this.ended) {
        if (this.failed) throw this.failed;
        return null;
      }
      await this.readable();
    }
  }

  /** What node holds, taken whole (paused mode: read() hands over every buffered byte). */
  pull(): Buffer | null {
    if (this.failed) throw this.failed;
    return this.socket.read() as Buffer | null;
  }

  get ended(): boolean {
    return this.finished || this.socket.destroyed;
  }

  /** Resolves once bytes, the end or a failure may be there; the idle timeout runs meanwhile. */
  async readable(): Promise<void> {
    if (this.socket.readableLength > 0 || this.ended || this.failed) return;
    this.socket.setTimeout(this.idleMs);
    await new Promise<void>((resolve) => (this.wake = resolve));
    this.socket.setTimeout(0);
  }

  /**
   * node:tls reads and decrypts ahead of the proxy up to its highWaterMark
   * (16 KiB, node's default, kept: it bounds what a stalled client holds
   * here, and 64 KiB measured no better), and each pass of the copy takes
   * what it holds.
   */
  streamSource(first: Buffer): StreamSource {
    return new StreamSource(this, first);
  }

  write(buf: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.failed || this.socket.destroyed) {
        reject(this.failed ?? Object.assign(new Error('upstream connection closed'), { code: 'ECONNRESET' }));
        return;
      }
      this.socket.setTimeout(this.idleMs);
      this.socket.write(buf, (err) => {
        // A read waiting meanwhile (the response head, while a body goes up) keeps its timeout.
        this.socket.setTimeout(this.wake !== null ? this.idleMs : 0);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  endWrite(): void { this.socket.end(); }
  destroy(err?: Error): void {
    if (err) this.failed ??= err;
    this.socket.destroy();
  }
  get destroyed(): boolean { return this.socket.destroyed; }
  setIdleTimeout(ms: number, error: () => Error): void {
    this.idleMs = ms;
    this.idleError = error;
    // A read already waiting takes the new timeout from now (the headers timeout once a
    // request body is all upstream), as PlainSocket's does.
    if (this.wake !== null) this.socket.setTimeout(ms);
  }
  isIdleAlive(): boolean {
    return this.afterAnswer() === 'quiet';
  }
  /** What node:tls has read and decrypted so far: its buffer holds what came past the answer. */
  afterAnswer(): 'quiet' | 'bytes' | 'closed' {
    if (this.socket.readableLength > 0) return 'bytes';
    return this.finished || this.failed || this.socket.destroyed ? 'closed' : 'quiet';
  }
}

/**
 * The client-side TLS options for a legacy origin. Below TLS 1.2, OpenSSL 3's
 * default security level refuses the SHA-1 signatures and small keys those
 * origins use: @SECLEVEL=0 is added unless the cipher list sets a level.
 */
export function upstreamTlsOptions(u: Upstream): tls.ConnectionOptions {
  const t = u.tls!;
  const legacy = t.minVersion === 'TLSv1' || t.minVersion === 'TLSv1.1';
  let ciphers = t.ciphers ?? (legacy ? 'DEFAULT' : undefined);
  if (ciphers !== undefined && legacy && !/@SECLEVEL=/i.test(ciphers)) ciphers += ':@SECLEVEL=0';
  const pinned = t.fingerprint256;
  return {
    host: u.host,
    port: u.port,
    servername: t.servername ?? undefined,
    minVersion: t.minVersion,
    maxVersion: t.maxVersion,
    ciphers,
    ca: t.caPem ?? undefined,
    // A pinned certificate replaces CA and name checks (as curl --pinnedpubkey users expect
    // of a self-signed legacy box); the pin itself is checked once connected.
    rejectUnauthorized: t.verify && pinned === null,
    ALPNProtocols: ['http/1.1'],
  };
}

function connectTls(o: ConnectUpstreamOptions): Promise<UpstreamStream> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(upstreamTlsOptions(o.upstream));
    const timer = setTimeout(() => socket.destroy(o.onTimeout()), o.timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      const pin = o.upstream.tls!.fingerprint256;
      const seen = socket.getPeerCertificate().fingerprint256;
      if (pin !== null && seen !== pin) {
        fail(new UpstreamCertificateError(`upstream ${o.upstream.url} presented certificate ${seen}, not the pinned ${pin}`));
        return;
      }
      socket.setNoDelay(true);
      resolve(new SocketUpstream(socket));
    });
  });
}

function connectNet(o: ConnectUpstreamOptions): Promise<UpstreamStream> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: o.upstream.host, port: o.upstream.port, noDelay: true });
    const timer = setTimeout(() => socket.destroy(o.onTimeout()), o.timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(new SocketUpstream(socket));
    });
  });
}

/**
 * TLS on the addon: with both directions in the kernel, read and written as
 * a plain socket, so its bodies splice; else on the system OpenSSL in user
 * space (SslUpstream). null when this upstream's handshake failed in TLS
 * itself (then given up for it, and the caller uses node:tls).
 */
async function connectSystemTls(o: ConnectUpstreamOptions, native: Native, contexts: UpstreamTlsContexts): Promise<UpstreamStream | null> {
  const sock = await PlainSocket.connect(native, { host: o.upstream.host, port: o.upstream.port, timeoutMs: o.timeoutMs, onTimeout: o.onTimeout });
  try {
    const r = await contexts.handshake(sock, o.upstream);
    if (r.ok) return r.kernel ? new PlainUpstream(sock) : new SslUpstream(native, sock, r.ssl);
    contexts.giveUp(o.upstream, r.why);
  } catch (err) {
    sock.destroy();
    throw err;
  }
  sock.destroy();
  return null;
}

export async function connectUpstream(o: ConnectUpstreamOptions): Promise<UpstreamStream> {
  if (o.upstream.tls) {
    const system = o.native !== null && o.systemTls !== null && o.systemTls.copyReason(o.upstream) === null;
    return (system ? await connectSystemTls(o, o.native!, o.systemTls!) : null) ?? connectTls(o);
  }
  if (o.native === null) return connectNet(o);
  const sock = await PlainSocket.connect(o.native, { host: o.upstream.host, port: o.upstream.port, timeoutMs: o.timeoutMs, onTimeout: o.onTimeout });
  return new PlainUpstream(sock);
}
