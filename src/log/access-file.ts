/**
 * The file behind --access-log FILE: pino's SonicBoom, written
 * asynchronously, with what nginx does when the file fails, so the log can
 * never stop the server (found by testing: each of these hung or ended it):
 * - a write that fails (ENOSPC on a full disk, EIO): nginx logs an alert and
 *   goes on serving. Here the stream is dropped at once, with its queued
 *   lines (SonicBoom's flushSync at exit retries such an error for ever, so
 *   a failed stream must not reach the exit), one error line says why, the
 *   lines meanwhile are counted and dropped, and the file is opened again
 *   10 s later (or on SIGUSR1); the next write that succeeds says how many
 *   were dropped. Before, the error was thrown uncaught, and at exit the
 *   retry loop held the process: no answers, and SIGTERM did nothing.
 * - a reader that stopped (a FIFO's log shipper) or a disk that stalls:
 *   at most QUEUE_MAX bytes wait (SonicBoom's maxLength), and lines past it
 *   are dropped and counted, where the queue grew until the process ran out
 *   of memory. nginx writes each line at once, or through a fixed buffer.
 * - a reopen (SIGUSR1) that cannot open the file (logrotate's `create` gave
 *   it to another owner, its directory moved): nginx logs the failed open()
 *   and keeps writing to the file it had; so does this. Before, the error
 *   ended the process.
 */
import fs from 'node:fs';
import { pino, type DestinationStream } from 'pino';
import { InvalidOptionError } from '../errors.js';
import type { Logger } from './logger.js';

/** Bytes of lines that may wait for the file before new lines are dropped. */
export const QUEUE_MAX = 16 * 1024 * 1024;
/** After a failed write, the file is tried again this much later (a full disk is rarely freed sooner). */
export const RETRY_MS = 10_000;
/** Lines dropped at a full queue are reported at most this often. */
export const DROP_REPORT_MS = 10_000;

type Sink = ReturnType<typeof pino.destination>;

export class AccessFile {
  private readonly file: string;
  private readonly log: Logger;
  private sink: Sink | null;
  /** A SIGUSR1's new file, until it is open. */
  private next: Sink | null = null;
  private retryAt = 0;
  /** Lines dropped since the last report: while the file failed, or at a full queue. */
  private dropped = 0;
  private dropReportAt = 0;
  /** Called with the stream each time it changes (the JSON format's logger is built on it). */
  private readonly onSink: (sink: DestinationStream | null) => void;

  /** Opens `file` once now, so that a path that cannot be written stops start-up with the reason, as nginx's [emerg] open() failed. */
  constructor(file: string, log: Logger, onSink: (sink: DestinationStream | null) => void) {
    this.file = file;
    this.log = log;
    this.onSink = onSink;
    try {
      fs.closeSync(fs.openSync(file, 'a', 0o640));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new InvalidOptionError(`--access-log ${file}: ${e.code ?? 'error'} (${e.message}); give a file this user can create or append to`);
    }
    this.sink = this.open();
    onSink(this.sink);
  }

  /** The stream to write a line to now, or null: the line is dropped (and counted). */
  current(): Sink | null {
    if (this.sink === null && Date.now() >= this.retryAt) {
      this.sink = this.open();
      this.onSink(this.sink);
      this.sink.once('write', () => this.recovered());
    }
    if (this.sink === null) this.dropped++;
    return this.sink;
  }

  /** SIGUSR1: the new file replaces the old once it is open; if it cannot be opened, the old one stays. */
  reopen(): void {
    this.next?.destroy();
    const next = this.open();
    this.next = next;
    next.once('ready', () => {
      if (this.next !== next) return;
      this.next = null;
      const old = this.sink;
      this.sink = next;
      this.onSink(next);
      old?.end();
      this.log.info({ signal: 'SIGUSR1', file: this.file }, 'access log reopened');
    });
  }

  close(): void {
    this.next?.destroy();
    this.sink?.end();
  }

  private open(): Sink {
    const sink = pino.destination({ dest: this.file, sync: false, mkdir: false, append: true, mode: 0o640, maxLength: QUEUE_MAX } as Parameters<typeof pino.destination>[0] & { mode: number });
    sink.on('error', (err: NodeJS.ErrnoException) => this.failed(sink, err));
    sink.on('drop', () => this.droppedAtFullQueue());
    return sink;
  }

  private failed(sink: Sink, err: NodeJS.ErrnoException): void {
    sink.destroy();
    if (sink === this.next) {
      this.next = null;
      this.log.error({ signal: 'SIGUSR1', file: this.file, code: err.code, err }, 'access log not reopened: lines go on to the file it had');
      return;
    }
    if (sink !== this.sink) return;
    this.sink = null;
    this.onSink(null);
    this.retryAt = Date.now() + RETRY_MS;
    this.log.error({ file: this.file, code: err.code, err, retryMs: RETRY_MS }, 'access log write failed: request lines are dropped until the file can be written again');
  }

  private recovered(): void {
    this.log.warn({ file: this.file, dropped: this.dropped }, 'access log written again');
    this.dropped = 0;
  }

  private droppedAtFullQueue(): void {
    this.dropped++;
    const now = Date.now();
    if (now < this.dropReportAt) return;
    this.dropReportAt = now + DROP_REPORT_MS;
    this.log.warn({ file: this.file, dropped: this.dropped, queueMax: QUEUE_MAX }, 'access log is not keeping up (a reader that stopped, a stalled disk): request lines dropped');
    this.dropped = 0;
  }
}
