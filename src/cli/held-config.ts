/**
 * --workers N with --config: the config text a worker starts from is the
 * primary's copy, the last one loaded successfully (at start or at the last
 * HUP that loaded), never the file as it is when the worker starts. nginx's
 * master respawns a dead worker from the configuration it holds in memory;
 * reading the file again would let an edit nobody reloaded reach one worker
 * only (requests split between two configurations), make it bind a --listen
 * address of its own, or keep it from ever coming back when the edit is
 * broken. The text goes in the worker's environment (small, set at fork,
 * read before anything is built); at a HUP that loads, the primary sends
 * the text it kept to every running worker, whose reload applies it (the
 * 'reload' message, worker-link.ts), so running and restarted workers run
 * the same text. The certificate, key, ticket key and --upstream-ca files
 * are held the same way, for a starting worker and for a running worker's
 * reload (held-files.ts).
 */
import { readConfigText } from '../config/proxy-config-file.js';
import type { WorkerRole } from './worker-protocol.js';

/** Set by the primary in each worker's environment: the config text it holds. */
export const WORKER_CONFIG_ENV = 'ALUDEL_WORKER_CONFIG';

/**
 * Set beside it: the restart-only settings (the listen addresses, the
 * engine, the access log, the cache...) as the primary started with them,
 * JSON. A reload that changes one of them loads, and the workers keep the
 * values they run with ("these take effect only on a restart"); the held
 * text is the new one, so a worker restarted later would have bound the new
 * addresses alone, beside workers still on the old ones. nginx keeps
 * listening where it listened, and what a reload changes applies to every
 * worker alike: a restarted worker takes these from here, the rest from
 * the held text.
 */
export const WORKER_STARTED_ENV = 'ALUDEL_WORKER_STARTED';

/** The values of `keys` in `s`, for WORKER_STARTED_ENV (the same JSON the reload's comparison uses, serving.ts changed). */
export function restartOnlyJson<S extends object>(s: S, keys: ReadonlyArray<keyof S>): string {
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k, s[k]])));
}

/** `next` with the values of `keys` taken from `kept` where it has them. */
export function keepValues<S extends object>(next: S, kept: Partial<S>, keys: ReadonlyArray<keyof S>): S {
  const out = { ...next };
  for (const k of keys) if (k in kept) out[k] = kept[k] as S[keyof S];
  return out;
}

/** A worker's start settings: `s` (from the held text) with the restart-only `keys` as the primary started (WORKER_STARTED_ENV). */
export function asStarted<S extends object>(s: S, keys: ReadonlyArray<keyof S>, role: WorkerRole | null, env: NodeJS.ProcessEnv = process.env): S {
  const json = role === null ? undefined : env[WORKER_STARTED_ENV];
  return json === undefined ? s : keepValues(s, JSON.parse(json) as Partial<S>, keys);
}

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
    /** The restart-only settings at start (restartOnlyJson), for WORKER_STARTED_ENV: no reload changes them. */
    readonly startedRestartOnly: string,
  ) {}

  get text(): string {
    return this.current;
  }

  /** HUP: reads the file and checks it as a start would; throws when it does not load. Nothing is kept until keep(). */
  async load(): Promise<{ text: string; settings: unknown }> {
    const text = await readConfigText(this.file);
    return { text, settings: await this.check(text) };
  }

  /** The text a worker restarted from now on starts from: a reload's, once everything it names loaded. */
  keep(text: string): void {
    this.current = text;
  }

  /** The restart-only settings that `next` changes from the start, by name (the reload warning). */
  restartOnlyChanged(next: object): string[] {
    const started = JSON.parse(this.startedRestartOnly) as Record<string, unknown>;
    return Object.keys(started).filter((k) => JSON.stringify((next as Record<string, unknown>)[k]) !== JSON.stringify(started[k]));
  }

  /** `next` with the restart-only settings as started: what a worker's reload applies. */
  asStarted<S extends object>(next: S): S {
    return { ...next, ...(JSON.parse(this.startedRestartOnly) as Partial<S>) };
  }
}
