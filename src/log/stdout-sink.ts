/**
 * The main log's stdout (and the access log's, when it has no file): never
 * blocks the event loop, never grows without bound, as nginx's error_log
 * writes go or fail at once. pino wrote it synchronously: on a pipe a
 * supervisor stopped reading (a log shipper that hung, `aludel serve | less`
 * left alone), the write(2) blocked once the pipe was full and every
 * connection stalled with it; an asynchronous stream alone would have
 * queued without end instead.
 *
 * Here, as for --access-log FILE (access-file.ts): stdout is non-blocking
 * where it is a pipe or a socket (node makes it so for its own
 * process.stdout, libuv's uv_pipe_open/uv_tcp_open); each line is written
 * at once when nothing waits, else queued, at most QUEUE_MAX bytes; lines
 * past that are counted and dropped, and once the queue has drained one
 * line says how many were lost (at most once per DROP_REPORT_MS). A file or
 * a terminal stays blocking, as before: a write there does not wait on a
 * reader. At exit what is queued gets EXIT_FLUSH_MS to go, so a fatal line
 * still reaches a reader that is reading.
 */
import fs from 'node:fs';
import type { DestinationStream } from 'pino';
import { DROP_REPORT_MS, QUEUE_MAX } from './access-file.js';

/**
 * How long a queue waits before it is written again: a raw descriptor has no
 * writability event here, so a pipe being read is retried at once (1 ms:
 * a fixed 50 ms wait drained 4 MB/s and dropped lines a live reader would
 * have taken), and one that took nothing waits twice as long each time, up
 * to RETRY_MAX_MS (SonicBoom waits 100 ms).
 */
const RETRY_MIN_MS = 1;
const RETRY_MAX_MS = 50;
/** At exit, how long the queue may take to go before the rest is given up. */
export const EXIT_FLUSH_MS = 2_000;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

export class StdoutSink implements DestinationStream {
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | null = null;
  private retryMs = RETRY_MIN_MS;
  /** Lines dropped (queue full, or the reader gone) since the last report. */
  private dropped = 0;
  private reportAt = 0;

  constructor(private readonly fd: number) {}

  write(line: string): void {
    if (this.queue.length === 0) {
      // The usual case, a reader keeping up: one write(2) of the string, as pino's own sync stream.
      const n = this.tryWrite(line);
      if (n < 0) return this.lose();
      const size = Buffer.byteLength(line);
      if (n === size) return;
      this.enqueue(Buffer.from(line).subarray(n));
      return;
    }
    const data = Buffer.from(line);
    if (this.queued + data.length > QUEUE_MAX) return this.lose();
    this.enqueue(data);
  }

  /** At exit (no event loop): the queue, for EXIT_FLUSH_MS at most; then the rest is given up. */
  flushAtExit(deadlineMs = EXIT_FLUSH_MS): void {
    if (this.timer !== null) clearTimeout(this.timer);
    const end = Date.now() + deadlineMs;
    while (this.queue.length > 0 && this.drainOnce() !== 'failed') {
      if (this.queue.length === 0 || Date.now() >= end) break;
      Atomics.wait(sleeper, 0, 0, 10);
    }
  }

  /**
   * Bytes written now, or -1 when the descriptor failed (EPIPE: nobody will
   * ever read; EBADF): the line is lost, and counted. EAGAIN (a full pipe)
   * is a state, not an error: 0 bytes went.
   */
  private tryWrite(data: Buffer | string): number {
    try {
      return typeof data === 'string' ? fs.writeSync(this.fd, data) : fs.writeSync(this.fd, data);
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EAGAIN' ? 0 : -1;
    }
  }

  private enqueue(data: Buffer): void {
    this.queue.push(data);
    this.queued += data.length;
    this.schedule();
  }

  private schedule(ms = this.retryMs): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const before = this.queued;
      if (this.drainOnce() !== 'partly') return;
      this.retryMs = this.queued < before ? RETRY_MIN_MS : Math.min(this.retryMs * 2, RETRY_MAX_MS);
      this.schedule();
    }, ms);
    // The log holds no process open: at exit, flushAtExit writes what is left.
    this.timer.unref();
  }

  /** Writes queued buffers until the pipe is full: 'done' (queue empty), 'partly', or 'failed' (the queue dropped). */
  private drainOnce(): 'done' | 'partly' | 'failed' {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const n = this.tryWrite(head);
      if (n < 0) {
        this.dropped += this.queue.length;
        this.queue.length = 0;
        this.queued = 0;
        return 'failed';
      }
      this.queued -= n;
      if (n < head.length) {
        this.queue[0] = head.subarray(n);
        return 'partly';
      }
      this.queue.shift();
    }
    this.reportDropped();
    return 'done';
  }

  private lose(): void {
    this.dropped++;
    this.schedule();
  }

  /** Once the queue drained: how many lines were lost since the last report, at most once per DROP_REPORT_MS. */
  private reportDropped(): void {
    if (this.dropped === 0) return;
    const now = Date.now();
    if (now < this.reportAt) {
      this.schedule(this.reportAt - now);
      return;
    }
    this.reportAt = now + DROP_REPORT_MS;
    const note = { level: 40, time: now, pid: process.pid, dropped: this.dropped, queueMax: QUEUE_MAX, msg: 'log lines dropped: stdout was not read (a full pipe, a reader that stopped) or could not be written' };
    this.dropped = 0;
    this.write(`${JSON.stringify(note)}\n`);
  }
}

let stdout: StdoutSink | null = null;

/** The process's one stdout sink (the main log of every logger, the access log without a file). */
export function stdoutSink(): StdoutSink {
  if (stdout !== null) return stdout;
  // node's process.stdout on a pipe or socket puts the descriptor in non-blocking mode (libuv
  // uv_pipe_open, uv_tcp_open); on a file or terminal it stays blocking, where writes do not wait.
  void process.stdout.writable;
  const sink = new StdoutSink(1);
  process.on('exit', () => sink.flushAtExit());
  stdout = sink;
  return sink;
}
