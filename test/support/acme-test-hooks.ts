/**
 * Test-only controls of the ACME renewal scheduler (src/tls/acme/acme-manager.ts),
 * loaded into the Aludel process by node itself (`NODE_OPTIONS=--import <this
 * file>`, see acmeHooks()). With ALUDEL_TEST_ACME_DIR=DIR:
 * - while DIR/renew-now exists, an issued certificate's renewal is due at once
 *   (the file is removed when used: one forced renewal per file);
 * - while DIR/hold exists, a renewal waits before ordering (a gate: the test
 *   opens it when its download is under way).
 * Without the variable it does nothing.
 */
import fs from 'node:fs';
import path from 'node:path';

const HOOKS = Symbol.for('aludel.test.acme');
const ENV = 'ALUDEL_TEST_ACME_DIR';

const dir = process.env[ENV];
if (dir !== undefined && dir !== '') {
  (globalThis as Record<symbol, unknown>)[HOOKS] = {
    renewalDelay(_name: string, delayMs: number): number {
      const now = path.join(dir, 'renew-now');
      if (!fs.existsSync(now)) return delayMs;
      fs.rmSync(now, { force: true });
      return 0;
    },
    async beforeRenewal(): Promise<void> {
      const hold = path.join(dir, 'hold');
      if (fs.existsSync(hold)) fs.writeFileSync(path.join(dir, 'waiting'), '');
      while (fs.existsSync(hold)) await new Promise((r) => setTimeout(r, 10));
    },
  };
}

/** Environment for startAludel that loads this module, driven by files in `controlDir`. */
export function acmeHooks(controlDir: string): { env: NodeJS.ProcessEnv; renewNow(): void; hold(): void; release(): void; waiting(): boolean } {
  fs.mkdirSync(controlDir, { recursive: true });
  const env = { [ENV]: controlDir, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${import.meta.url}`.trim() };
  return {
    env,
    renewNow: () => fs.writeFileSync(path.join(controlDir, 'renew-now'), ''),
    hold: () => fs.writeFileSync(path.join(controlDir, 'hold'), ''),
    release: () => fs.rmSync(path.join(controlDir, 'hold'), { force: true }),
    waiting: () => fs.existsSync(path.join(controlDir, 'waiting')),
  };
}
