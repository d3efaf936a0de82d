/**
 * Test-only controls of the ACME renewal scheduler (src/tls/acme/acme-manager.ts),
 * loaded into the Aludel process by node itself (`NODE_OPTIONS=--import <this
 * file>`, see acmeHooks()). With ALUDEL_TEST_ACME_DIR=DIR:
 * - while DIR/renew-now exists, an issued certificate's renewal is due at once
 *   (the file is removed when used: one forced renewal per file);
 * - while DIR/hold exists, a renewal waits before ordering (a gate: the test
 *   opens it when its download is under way);
 * - while DIR/hold-challenge exists, a challenge once pending waits before the
 *   CA is asked to validate it, and DIR/challenge-pending holds it (JSON), so
 *   a test can look at what every process answers meanwhile.
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
    async challengePending(challenge: unknown): Promise<void> {
      const hold = path.join(dir, 'hold-challenge');
      if (fs.existsSync(hold)) {
        // Renamed into place: the test polls for it and must never read half of it.
        fs.writeFileSync(path.join(dir, 'challenge-pending.tmp'), JSON.stringify(challenge));
        fs.renameSync(path.join(dir, 'challenge-pending.tmp'), path.join(dir, 'challenge-pending'));
      }
      while (fs.existsSync(hold)) await new Promise((r) => setTimeout(r, 10));
    },
  };
}

/** Environment for startAludel that loads this module, driven by files in `controlDir`. */
export interface AcmeHooks {
  env: NodeJS.ProcessEnv;
  renewNow(): void;
  hold(): void;
  release(): void;
  waiting(): boolean;
  holdChallenge(): void;
  releaseChallenge(): void;
  /** The challenge held pending, once there is one (src/tls/acme/challenges.ts, AcmeChallenge). */
  pendingChallenge(): { kind: string; [field: string]: string } | null;
}

export function acmeHooks(controlDir: string): AcmeHooks {
  fs.mkdirSync(controlDir, { recursive: true });
  const env = { [ENV]: controlDir, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${import.meta.url}`.trim() };
  return {
    env,
    renewNow: () => fs.writeFileSync(path.join(controlDir, 'renew-now'), ''),
    hold: () => fs.writeFileSync(path.join(controlDir, 'hold'), ''),
    release: () => fs.rmSync(path.join(controlDir, 'hold'), { force: true }),
    waiting: () => fs.existsSync(path.join(controlDir, 'waiting')),
    holdChallenge: () => fs.writeFileSync(path.join(controlDir, 'hold-challenge'), ''),
    releaseChallenge: () => fs.rmSync(path.join(controlDir, 'hold-challenge'), { force: true }),
    pendingChallenge: () => {
      const file = path.join(controlDir, 'challenge-pending');
      return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as ReturnType<AcmeHooks['pendingChallenge']>) : null;
    },
  };
}
