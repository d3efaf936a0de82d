/**
 * A gate in front of the cache's commit, for the tests of collapsed fills
 * (issue 16): it opens, without relying on timing, the window between the
 * leader's last byte (res.end()) and the commit, in which other requests
 * still follow the fill in progress.
 *
 * This module is loaded into the Aludel process by node itself
 * (`NODE_OPTIONS=--import <this file>`, see commitGate()): it installs the
 * hook src/cache/cache.ts looks up under Symbol.for('aludel.test.cache.beforeCommit').
 * While DIR/hold exists, each commit appends its key to DIR/held and waits
 * until DIR/hold is removed. Without ALUDEL_TEST_COMMIT_GATE_DIR it does
 * nothing.
 */
import fs from 'node:fs';
import path from 'node:path';

const HOOK = Symbol.for('aludel.test.cache.beforeCommit');
const ENV = 'ALUDEL_TEST_COMMIT_GATE_DIR';

const gateDir = process.env[ENV];
if (gateDir !== undefined && gateDir !== '') {
  (globalThis as Record<symbol, unknown>)[HOOK] = async (key: string): Promise<void> => {
    const hold = path.join(gateDir, 'hold');
    if (!fs.existsSync(hold)) return;
    fs.appendFileSync(path.join(gateDir, 'held'), `${key}\n`);
    while (fs.existsSync(hold)) await new Promise((r) => setTimeout(r, 10));
  };
}

export interface CommitGate {
  /** Environment for startAludel: loads this module into the process. */
  env: NodeJS.ProcessEnv;
  /** From now on, commits wait. */
  hold(): void;
  /** Commits go on (those waiting within 10 ms). */
  release(): void;
  /** Keys of the commits that waited so far, in order. */
  held(): string[];
}

/** A gate using directory `dir` (created). */
export function commitGate(dir: string): CommitGate {
  fs.mkdirSync(dir, { recursive: true });
  const holdFile = path.join(dir, 'hold');
  const heldFile = path.join(dir, 'held');
  return {
    env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${import.meta.url}`.trim(), [ENV]: dir },
    hold: () => fs.writeFileSync(holdFile, ''),
    release: () => fs.rmSync(holdFile, { force: true }),
    held: () => (fs.existsSync(heldFile) ? fs.readFileSync(heldFile, 'utf8').split('\n').filter((l) => l !== '') : []),
  };
}
