/**
 * When the primary starts a worker again after it died: at once the first
 * time, then doubling, capped, so a worker that cannot start (a bad file, a
 * crash at start-up) costs a few restarts a minute instead of a busy loop.
 * A worker that ran for STABLE_MS counts as healthy again: the next death
 * starts the sequence over. Pure, for the unit tests.
 */
export const RESTART_FIRST_MS = 100;
export const RESTART_CAP_MS = 30_000;
export const STABLE_MS = 10_000;

/** Deaths in a row of one worker slot, given how long the last one ran. */
export function deathsInRow(previous: number, ranMs: number): number {
  return ranMs >= STABLE_MS ? 1 : previous + 1;
}

/** The wait before the restart that follows the n-th death in a row (n >= 1). */
export function restartDelayMs(n: number): number {
  if (n <= 1) return RESTART_FIRST_MS;
  return Math.min(RESTART_CAP_MS, RESTART_FIRST_MS * 2 ** (n - 1));
}
