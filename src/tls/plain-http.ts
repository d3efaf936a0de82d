/**
 * Plain HTTP sent to the TLS port: OpenSSL fails the handshake with
 * SSL_R_HTTP_REQUEST ("http request", ssl/record/ssl3_record.c, when the
 * first record header reads GET/POST/HEAD/PUT). nginx answers such a client
 * "400 The plain HTTP request was sent to HTTPS port" instead of resetting
 * it, so the admin or the user sees what went wrong; Aludel does the same,
 * in the clear, then closes. What the client sent is read and dropped first
 * (one non-blocking pass), so that closing does not turn into a RST that
 * could discard the answer before the client reads it. The answer's bytes
 * are http/h1-wire.ts PLAIN_HTTP_ANSWER, handed down by the commands (tls/
 * sits below http/, the one writer of HTTP/1.1 wire format).
 */
import { AGAIN, type Native } from '../native/binding.js';

const DRAIN = Buffer.allocUnsafe(16 * 1024);
/** At most this much unread input is dropped; a client sending more gets the RST it asked for. */
const DRAIN_MAX = 256 * 1024;

/** Whether a failed handshake was plain HTTP (OpenSSL's own diagnosis, in the error's queue). */
export function isPlainHttp(err: unknown): boolean {
  const queue = (err as { opensslErrors?: unknown }).opensslErrors;
  return Array.isArray(queue) && queue.some((e) => /http request/i.test(String(e)));
}

/** Best effort, never throws: `answer` (the 400) in the clear, unread input dropped, our FIN. The caller closes the fd. */
export function answerPlainHttp(native: Native, fd: number, answer: Buffer): void {
  try {
    native.send(fd, answer, 0, answer.length);
    for (let dropped = 0; dropped < DRAIN_MAX;) {
      const n = native.recv(fd, DRAIN, 0, DRAIN.length, false);
      if (n === AGAIN || n <= 0) break;
      dropped += n;
    }
    native.shutdownWrite(fd);
  } catch {
    // The client is gone already: nothing to tell it.
  }
}
