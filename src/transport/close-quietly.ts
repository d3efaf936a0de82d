/**
 * Closing a file descriptor once its bytes have been sent. close(2) can
 * report EIO or EINTR, but by then the descriptor is released anyway (Linux
 * frees it before it returns the error, see close(2) "Dealing with error
 * returns"), and what the client received cannot change: there is nothing to
 * retry and nobody to tell.
 */
import fs from 'node:fs';

export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // See above: released, and already sent.
  }
}
