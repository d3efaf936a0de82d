/**
 * The records a kTLS RX upstream socket hands over apart from application
 * data (read with recvmsg and the TLS_GET_RECORD_TYPE cmsg,
 * Documentation/networking/tls.rst), and what each means for the proxy.
 * The decision is pure (recordAction); ControlRecords does the one read.
 */
import { AGAIN, type Native } from '../native/binding.js';
import { UpstreamTlsRecordError } from '../errors.js';
import type { ControlRecordReader } from '../transport/plain-socket.js';

/** RFC 8446 §5.1 / RFC 5246 §6.2.1 content types. */
const ALERT = 21;
const HANDSHAKE = 22;
/** RFC 8446 §6 / RFC 5246 §7.2 alert levels and descriptions. */
const WARNING = 1;
const CLOSE_NOTIFY = 0;
const USER_CANCELED = 90;
/** RFC 8446 §4 / RFC 5246 §7.4 handshake message types. */
const HELLO_REQUEST = 0;
const NEW_SESSION_TICKET = 4;
const KEY_UPDATE = 24;

export type RecordAction = { kind: 'again' } | { kind: 'eof' } | { kind: 'fail'; why: string };

/** What one non-data record means: `body` is its plaintext (a whole record: the kernel never merges types). */
export function recordAction(type: number, body: Buffer, tls13: boolean): RecordAction {
  if (type === ALERT) {
    if (body.length < 2) return { kind: 'fail', why: `a truncated alert record (${body.length} bytes)` };
    const [level, description] = [body[0]!, body[1]!];
    // close_notify ends the stream (RFC 8446 §6.1). user_canceled is followed by a close_notify.
    if (description === CLOSE_NOTIFY) return { kind: 'eof' };
    if (description === USER_CANCELED) return { kind: 'again' };
    // TLS 1.2 warning alerts (e.g. no_renegotiation) may be ignored; in TLS 1.3 every other alert is fatal (§6.2).
    if (!tls13 && level === WARNING) return { kind: 'again' };
    return { kind: 'fail', why: `the upstream sent TLS alert ${description} (level ${level})` };
  }
  if (type === HANDSHAKE) return handshakeAction(body, tls13);
  return { kind: 'fail', why: `an unexpected TLS record of type ${type} after the handshake` };
}

/** Post-handshake messages: one record may carry several (RFC 8446 §5.1), each a 4-byte header and its body. */
function handshakeAction(body: Buffer, tls13: boolean): RecordAction {
  for (let off = 0; off < body.length;) {
    if (body.length - off < 4) return { kind: 'fail', why: 'a handshake message split across records' };
    const type = body[off]!;
    const len = body.readUIntBE(off + 1, 3);
    off += 4 + len;
    if (off > body.length) return { kind: 'fail', why: 'a handshake message split across records' };
    // Tickets: the proxy does not resume upstream sessions, so a ticket is dropped (RFC 8446 §4.6.1 lets a client ignore it).
    if (tls13 && type === NEW_SESSION_TICKET) continue;
    // RFC 5246 §7.4.1.1: a client that does not wish to renegotiate may ignore HelloRequest.
    if (!tls13 && type === HELLO_REQUEST) continue;
    if (tls13 && type === KEY_UPDATE) {
      return { kind: 'fail', why: 'the upstream sent a TLS 1.3 KeyUpdate, which kernel TLS RX cannot follow before Linux 6.14' };
    }
    return { kind: 'fail', why: `an unexpected handshake message (type ${type}) after the handshake` };
  }
  return { kind: 'again' };
}

/** A TLS record's largest plaintext (RFC 8446 §5.1) plus room for a TLS 1.3 inner type byte. */
const RECORD_MAX = 16 * 1024 + 256;
const record = Buffer.allocUnsafe(RECORD_MAX);

/** The reader a kTLS RX upstream socket uses (PlainSocket.setControlRecordReader). */
export class ControlRecords implements ControlRecordReader {
  constructor(private readonly native: Native, private readonly fd: number, private readonly tls13: boolean, private readonly upstream: string) {}

  takeControlRecord(): 'again' | 'eof' {
    const r = this.native.recvRecord(this.fd, record, 0, RECORD_MAX);
    if (r === AGAIN) return 'again';
    if (r === 0) return 'eof';
    if (typeof r === 'number') throw new UpstreamTlsRecordError(`upstream ${this.upstream}: recvmsg returned ${r}`);
    const action = recordAction(r.type, record.subarray(0, r.length), this.tls13);
    if (action.kind === 'fail') throw new UpstreamTlsRecordError(`upstream ${this.upstream}: ${action.why}; connection closed`);
    return action.kind;
  }
}
