/** pino: structured JSON lines admins can feed to their log pipeline, cheap on the hot path. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level?: string; destination?: number | string } = {}): Logger {
  const dest = options.destination ?? 1;
  return pino(
    { level: options.level ?? process.env.ALUDEL_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
    pino.destination({ dest: typeof dest === 'number' ? dest : dest, sync: true }),
  );
}

/** For library users and tests that do not care about logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
