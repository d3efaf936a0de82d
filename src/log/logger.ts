/**
 * pino: structured JSON lines admins can feed to their log pipeline, cheap
 * on the hot path. On stdout (the default) through the process's one
 * stdout sink: never blocking on a reader that stopped, bounded, drops
 * counted (stdout-sink.ts).
 */
import { pino, type Logger } from 'pino';
import { stdoutSink } from './stdout-sink.js';

export type { Logger };

export function createLogger(options: { level?: string; destination?: number | string } = {}): Logger {
  const dest = options.destination ?? 1;
  return pino(
    { level: options.level ?? process.env.ALUDEL_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
    dest === 1 ? stdoutSink() : pino.destination({ dest, sync: true }),
  );
}

/** For library users and tests that do not care about logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
