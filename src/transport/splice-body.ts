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
}

/**
 * What the caller writes around each pipeful (the protocol's framing: an
 * HTTP/1.1 chunk's size line and CRLF), knowing its size before it goes.
 */
export interface AroundPiece {
  before(size: number): void;
  after(): void;
}

/**
 * Moves `length` bytes (null: until the upstream's FIN) from `src` to `dst`.
 * Resolves with the bytes moved. A FIN before `length` bytes rejects with
 * UpstreamTruncatedError: the caller must abort the client's response, never
 * end it cleanly. With `around`, each pipeful is framed by the caller: its
 * before() runs once the pipe holds the piece, its after() once it is out.
 */
export async function spliceBody(pool: PipePool, src: Pick<PlainSocket, 'spliceInto'>, dst: SpliceTarget, length: number | null, onBytes?: (n: number) => void, around?: AroundPiece): Promise<number> {
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
      around?.before(r);
      await dst.spliceFromPipe(pipe.read, r);
      around?.after();
      inPipe = 0;
      moved += r;
      onBytes?.(r);
    }
  } finally {
    pool.release(pipe, inPipe === 0);
  }
  return moved;
}
