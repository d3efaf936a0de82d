/**
 * Pipes for splice(2), reused across bodies (as HAProxy keeps a pipe pool):
 * creating one costs two fds and a pipe2 + fcntl per body otherwise. A pipe
 * goes back only when empty; one that still holds bytes after an error is
 * closed, so no byte of one response can ever reach another client.
 */
import type { Native } from '../native/binding.js';

/** Bytes moved per fill: big enough for whole 16 KiB TLS records in batches, small enough per connection. */
const PIPE_SIZE = 256 * 1024;
const KEEP_MAX = 64;

export interface Pipe {
  read: number;
  write: number;
  size: number;
}

export class PipePool {
  private readonly native: Native;
  private readonly idle: Pipe[] = [];

  constructor(native: Native) {
    this.native = native;
  }

  acquire(): Pipe {
    return this.idle.pop() ?? this.native.pipeNew(PIPE_SIZE);
  }

  /** `empty`: every byte put in was taken out. Otherwise the pipe is closed, never reused. */
  release(pipe: Pipe, empty: boolean): void {
    if (empty && this.idle.length < KEEP_MAX) {
      this.idle.push(pipe);
      return;
    }
    this.native.closeFd(pipe.read);
    this.native.closeFd(pipe.write);
  }
}
