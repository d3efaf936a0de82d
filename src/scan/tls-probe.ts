/**
 * Does a listening port speak TLS? One connection over loopback, one
 * ClientHello, and the first record header of the answer:
 * - A TLS server answers any ClientHello with a handshake record (ServerHello,
 *   type 22) or an alert (type 21), both starting with the record header
 *   type, 0x03, minor version (RFC 5246 §6.2.1; TLS 1.3 keeps that header,
 *   RFC 8446 §5.1). Either one means TLS, so the hello's content need not be
 *   accepted: a TLS 1.3-only server's protocol_version alert counts too.
 * - Other bytes (an HTTP server's "HTTP/1.1 400", a Redis "-ERR") mean no
 *   TLS on that port.
 * - Silence until the timeout, or a close without a byte, say nothing for
 *   sure (a TLS server at its connection limit, PostgreSQL dropping a bad
 *   startup packet): unknown.
 * The probe reads at most one record header (plus what arrived in the same
 * segment, kept for the note) and closes: the handshake is never completed,
 * so nothing is logged beyond an aborted handshake (nginx: "peer closed
 * connection in SSL handshake" at level info, below its default error_log
 * level) or, for a plain server, one malformed request (nginx: a 400 in the
 * access log).
 *
 * Why probe at all: linking libssl says nothing about serving TLS (Debian's
 * nginx links it with or without `listen ... ssl`), TLS runs on any port and
 * plain HTTP behind a load balancer on 8080 or even 443, and nginx or HAProxy
 * configurations cannot be read reliably from outside (includes, templates,
 * containers). A ClientHello over loopback is what a monitoring check sends;
 * it is right whatever the port and costs the server one aborted handshake.
 * Its bounds: 127.0.0.1 and ::1 only, one connection per port and program
 * (recommend.ts planProbes), one ClientHello, PROBE_TIMEOUT_MS.
 */
import crypto from 'node:crypto';
import net from 'node:net';
import type { PortTls } from './recommend.js';

export interface ProbeResult {
  tls: PortTls;
  note: string;
}

/**
 * How long a port has to answer. A TLS server sends its first flight after
 * one key exchange and one signature: well under a millisecond here, and
 * still well under a second in the emulated kTLS VM (crypto ~95x slower).
 */
export const PROBE_TIMEOUT_MS = 2000;

/** Type, version (2), length (2): RFC 5246 §6.2.1. */
const RECORD_HEADER_BYTES = 5;
/** Bytes of a non-TLS answer kept for the note. */
const NOTE_BYTES = 16;

const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const vec16 = (...parts: Buffer[]): Buffer => Buffer.concat([u16(Buffer.concat(parts).length), ...parts]);
const ext = (type: number, body: Buffer): Buffer => Buffer.concat([u16(type), vec16(body)]);
const list16 = (values: number[]): Buffer => vec16(...values.map(u16));

/**
 * A TLS 1.2 ClientHello (RFC 5246 §7.4.1.2) without SNI: ECDHE and RSA
 * suites with AES-GCM, ChaCha20-Poly1305 (RFC 7905) and the CBC fallbacks
 * that 1.0.2-era configurations list, so that old and new servers alike
 * answer with a ServerHello; curves and signature algorithms as RFC 8422 and
 * RFC 5246 §7.4.1.4.1 expect for the ECDHE suites.
 */
export function clientHello(random: Buffer): Buffer {
  if (random.length !== 32) throw new Error('the ClientHello random is 32 bytes');
  const suites = [0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0x009e, 0x009f, 0x009c, 0x009d, 0xc009, 0xc013, 0xc00a, 0xc014, 0x002f, 0x0035, 0x000a, 0x00ff];
  const extensions = Buffer.concat([
    ext(0x000a, list16([0x001d, 0x0017, 0x0018])), // supported_groups: x25519, secp256r1, secp384r1
    ext(0x000b, Buffer.from([1, 0])), // ec_point_formats: uncompressed
    ext(0x000d, list16([0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0203, 0x0201])), // signature_algorithms
  ]);
  const body = Buffer.concat([Buffer.from([3, 3]), random, Buffer.from([0]), list16(suites), Buffer.from([1, 0]), vec16(extensions)]);
  const handshake = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  // Record version 0x0301 in the first record, as RFC 8446 §5.1 advises for compatibility.
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(handshake.length), handshake]);
}

function printable(bytes: Buffer): string {
  return JSON.stringify(bytes.subarray(0, NOTE_BYTES).toString('latin1').replace(/[^\x20-\x7e]/g, '.'));
}

/**
 * What the first bytes of the answer (at most the first segments, until
 * RECORD_HEADER_BYTES arrived) say, given how the wait ended: 'data' (enough
 * bytes), 'closed' (FIN or reset first) or 'timeout'.
 */
export function classifyReply(bytes: Buffer, end: 'data' | 'closed' | 'timeout', timeoutMs = PROBE_TIMEOUT_MS): ProbeResult {
  if (bytes.length >= RECORD_HEADER_BYTES) {
    const [type, major, minor] = [bytes[0]!, bytes[1]!, bytes[2]!];
    // TLS 1.2 and earlier cap a record at 2^14 + 2048 bytes (RFC 5246 §6.2.3).
    if ((type === 22 || type === 21) && major === 3 && minor <= 4 && bytes.readUInt16BE(3) <= 16384 + 2048) {
      return { tls: 'yes', note: `probe: TLS ${type === 22 ? 'handshake record' : 'alert'}` };
    }
  }
  if (bytes.length > 0) return { tls: 'no', note: `probe: answered ${printable(bytes)}` };
  if (end === 'timeout') return { tls: 'unknown', note: `probe: no answer within ${timeoutMs} ms` };
  return { tls: 'unknown', note: 'probe: closed without answering' };
}

/** One connection to host:port: the ClientHello, the first record header or the timeout, then close. */
export function probeTls(host: string, port: number, timeoutMs = PROBE_TIMEOUT_MS): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let got = Buffer.alloc(0);
    let connected = false;
    let done = false;
    const finish = (r: ProbeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // Unread bytes (the rest of the server's flight) make the kernel send a reset rather than a FIN: the server sees an aborted handshake either way.
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish(connected ? classifyReply(got, 'timeout', timeoutMs) : { tls: 'unknown', note: `probe: no connection within ${timeoutMs} ms` }), timeoutMs);
    sock.once('connect', () => {
      connected = true;
      sock.setNoDelay(true);
      sock.write(clientHello(crypto.randomBytes(32)));
    });
    sock.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]).subarray(0, Math.max(NOTE_BYTES, RECORD_HEADER_BYTES));
      if (got.length >= RECORD_HEADER_BYTES) finish(classifyReply(got, 'data', timeoutMs));
    });
    sock.once('end', () => finish(classifyReply(got, 'closed', timeoutMs)));
    sock.once('error', (err: NodeJS.ErrnoException) => finish(connected ? classifyReply(got, 'closed', timeoutMs) : { tls: 'unknown', note: `probe: could not connect (${err.code ?? err.message})` }));
  });
}
