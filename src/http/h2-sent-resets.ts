/**
 * The RST_STREAM frames nghttp2 sends on its own account, read off the
 * frames it writes into the connection.
 *
 * nghttp2 checks every request header block against RFC 9113 §8 (a :path
 * that is not origin-form or '*', an upper-case field name, a
 * connection-specific field such as Connection or Transfer-Encoding, TE other
 * than "trailers", a missing or repeated pseudo-header, §8.1.1, §8.2.2,
 * §8.3.1) and a body against its Content-Length (§8.1.1). A request it finds
 * malformed is a stream error PROTOCOL_ERROR (§5.4.2): it resets the stream
 * itself and node never makes a stream of it, nor reports it (node's
 * OnInvalidFrame only counts it towards maxSessionInvalidFrames), so the
 * request would leave no line in any log; nginx logs each such request (a
 * 400). The frames nghttp2 writes are the one place it shows: every frame
 * starts with a 9-octet header giving its payload length and type (§4.1),
 * so following them costs a look at 9 bytes per frame.
 */
import type { Duplex } from 'node:stream';

/** RFC 9113 §6.4: RST_STREAM is frame type 0x3 with a 4-octet payload, the error code. */
const RST_STREAM = 0x3;
const RST_STREAM_LENGTH = 4;
const FRAME_HEADER = 9;

/**
 * Follows a stream of HTTP/2 frames as written (frames may be split
 * anywhere across writes, or several share one) and calls `onReset` with
 * the stream id and error code of each RST_STREAM.
 */
export class SentFrames {
  private readonly header = Buffer.alloc(FRAME_HEADER);
  private headerHave = 0;
  /** Payload octets of the current frame still to come. */
  private left = 0;
  /** The current frame is a RST_STREAM whose payload is being collected. */
  private rst: { stream: number; code: Buffer; have: number } | null = null;

  constructor(private readonly onReset: (stream: number, code: number) => void) {}

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.left === 0 && this.headerHave < FRAME_HEADER) {
        const n = Math.min(FRAME_HEADER - this.headerHave, chunk.length - at);
        this.header.set(chunk.subarray(at, at + n), this.headerHave);
        this.headerHave += n;
        at += n;
        if (this.headerHave === FRAME_HEADER) this.startFrame();
        continue;
      }
      const n = Math.min(this.left, chunk.length - at);
      if (this.rst !== null) {
        this.rst.code.set(chunk.subarray(at, at + n), this.rst.have);
        this.rst.have += n;
      }
      this.left -= n;
      at += n;
      if (this.left === 0) this.endFrame();
    }
  }

  private startFrame(): void {
    this.left = this.header.readUIntBE(0, 3);
    const type = this.header[3]!;
    // The high bit of the stream identifier is reserved (§4.1).
    const stream = this.header.readUInt32BE(5) & 0x7fffffff;
    this.rst = type === RST_STREAM && this.left === RST_STREAM_LENGTH ? { stream, code: Buffer.alloc(RST_STREAM_LENGTH), have: 0 } : null;
    if (this.left === 0) this.endFrame();
  }

  private endFrame(): void {
    const rst = this.rst;
    this.headerHave = 0;
    this.rst = null;
    if (rst !== null) this.onReset(rst.stream, rst.code.readUInt32BE(0));
  }
}

/**
 * Calls `onReset` for each RST_STREAM written to `conn` from now on. node's
 * http2 server writes a connection it did not make (a Duplex of ours) through
 * its JSStreamSocket, which calls conn.write() with each buffer nghttp2
 * produced, in order (lib/internal/js_stream_socket.js, doWrite): the write
 * is followed there, then goes on unchanged. A node:tls socket (the
 * fallback engine) has a native stream handle that nghttp2 writes through
 * directly (lib/internal/http2/core.js, setupHandle): no write to follow,
 * so no reset is reported there.
 */
export function followSentResets(conn: Duplex, onReset: (stream: number, code: number) => void): void {
  const frames = new SentFrames(onReset);
  const write = conn.write;
  conn.write = function (this: Duplex, chunk: unknown, ...rest: unknown[]): boolean {
    // nghttp2's output is always buffers; the walk reads fixed-size fields only, so it cannot throw.
    if (chunk instanceof Uint8Array) frames.push(chunk);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as Duplex['write'];
}
