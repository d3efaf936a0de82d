/**
 * --workers N with --config: the config text a worker starts from is the
 * primary's copy, the last one loaded successfully (at start or at the last
 * HUP that loaded), never the file as it is when the worker starts. nginx's
 * master respawns a dead worker from the configuration it holds in memory;
 * reading the file again would let an edit nobody reloaded reach one worker
 * only (requests split between two configurations), make it bind a --listen
 * address of its own, or keep it from ever coming back when the edit is
 * broken. The text goes in the worker's environment (small, set at fork,
 * read before anything is built); a worker's own reload (HUP) reads the
 * file, as one process does. Certificate and key files are read by path, as
 * on a reload.
 */
import type { Logger } from '../log/logger.js';
import { readConfigText } from '../config/proxy-config-file.js';
import type { WorkerRole } from './worker-protocol.js';

/** Set by the primary in each worker's environment: the config text it holds. */
export const WORKER_CONFIG_ENV = 'ALUDEL_WORKER_CONFIG';

/**
 * The config text this process starts from: a worker's is its primary's copy;
 * anyone else reads the file (undefined: no --config).
 */
export async function startConfigText(file: string | undefined, role: WorkerRole | null, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  if (file === undefined) return undefined;
  const held = role === null ? undefined : env[WORKER_CONFIG_ENV];
  return held ?? readConfigText(file);
}

/** The primary's copy of the config text, replaced only by a reload that loads. */
export class HeldConfig {
  constructor(
    private readonly file: string,
    private current: string,
    /** Validates a text as a start would (throws when it would not start). */
    private readonly check: (text: string) => Promise<unknown>,
  ) {}

  get text(): string {
    return this.current;
  }

  /** HUP: reads the file; keeps it when it loads, else keeps the previous text and says so. */
  async reload(log: Logger): Promise<void> {
    try {
      const text = await readConfigText(this.file);
      await this.check(text);
      this.current = text;
    } catch (err) {
      log.error({ detail: (err as Error).message }, 'reload: the config file does not load; a worker restarted later starts from the last one that did');
    }
  }
}
