/**
 * Zero-copy body forwarding: upstream socket -> pipe -> kTLS socket with
 * splice(2). The bytes never enter user space; with kTLS TX the kernel
 * encrypts them on the way out. The pipe is filled only when empty and then
 * drained completely, so each splice's AGAIN has one meaning (no upstream data
 * / client socket full) and the pipe goes back to the pool empty.
 */
import { UpstreamTruncatedError } from '../errors.js';
import type { PipePool } from './pipe-pool.js';
import type { PlainSocket } from './plain-socket.js';

export interface SpliceTarget {
  spliceFromPipe(pipeRead: number, length: number): Promise<void>;
  write(chunk: Buffer): boolean;
}

const CRLF = Buffer.from('\r\n');

/**
 * Moves `length` bytes (null: until the upstream's FIN) from `src` to `dst`.
 * Resolves with the bytes moved. A FIN before `length` bytes rejects with
 * UpstreamTruncatedError: the caller must abort the client's response, never
 * end it cleanly. With `chunked`, each pipeful goes out as one HTTP/1.1 chunk
 * (RFC 9112 §7.1): its size line is written through the connection first (the
 * pipe already holds that many bytes) and its CRLF after.
 */
export async function spliceBody(pool: PipePool, src: PlainSocket, dst: SpliceTarget, length: number | null, onBytes?: (n: number) => void, chunked = false): Promise<number> {
  const pipe = pool.acquire();
  let moved = 0;
  let inPipe = 0;
  try {
    while (length === null || moved < length) {
      const want = length === null ? pipe.size : Math.min(pipe.size, length - moved);
      const r = await src.spliceInto(pipe.write, want);
      if (r === 0) {
        if (length !== null) throw new UpstreamTruncatedError(`closed after ${moved} of ${length} body bytes`);
        break;
      }
      inPipe = r;
      if (chunked) dst.write(Buffer.from(`${r.toString(16)}\r\n`, 'latin1'));
      await dst.spliceFromPipe(pipe.read, r);
      if (chunked) dst.write(CRLF);
      inPipe = 0;
      moved += r;
      onBytes?.(r);
    }
  } finally {
    pool.release(pipe, inPipe === 0);
  }
  return moved;
}
