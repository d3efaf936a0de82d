/**
 * src/cli/early-signals.ts, the CLI's first module: while the rest of the
 * program loads (about half a second), USR1 must not open Node's inspector
 * and HUP or USR2 must not end a serving process. Checked in a child process
 * that loads only that module, so no later handler can be what saves it, and
 * on the built CLI's entry, whose first import it must be (ES modules run in
 * import order).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const early = fileURLToPath(new URL('../../src/cli/early-signals.js', import.meta.url));
const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** A node that loads early-signals.ts as `aludel <command>` would, says "ready", and lives 1.5 s: how it ended, and its stderr. */
async function probe(command: string, signals: NodeJS.Signals[]): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  const script = `process.argv[2] = ${JSON.stringify(command)}; await import(${JSON.stringify(early)}); console.log('ready'); setTimeout(() => process.exit(0), 1500);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<[number | null, string | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  for (const s of signals) {
    child.kill(s);
    await new Promise((r) => setTimeout(r, 50));
  }
  const [code, signal] = await exited;
  return { code, signal, stderr };
}

test('serving commands: USR1 opens no inspector, HUP and USR2 do not end the process', async () => {
  for (const command of ['serve', 'proxy', 'tcp']) {
    const r = await probe(command, ['SIGUSR1', 'SIGHUP', 'SIGUSR2']);
    assert.equal(r.signal, null, `${command}: ended by ${r.signal}`);
    assert.equal(r.code, 0);
    assert.doesNotMatch(r.stderr, /Debugger listening/, command);
  }
});

test('one-shot commands: USR1 opens no inspector, and HUP keeps its default (a closed terminal ends them)', async () => {
  const usr1 = await probe('doctor', ['SIGUSR1']);
  assert.equal(usr1.code, 0);
  assert.doesNotMatch(usr1.stderr, /Debugger listening/);
  const hup = await probe('doctor', ['SIGHUP']);
  assert.equal(hup.signal, 'SIGHUP');
});

test('the CLI loads it before any other module', () => {
  const first = /^import\s+['"]([^'"]+)['"]/m.exec(fs.readFileSync(main, 'utf8'));
  assert.equal(first?.[1], './early-signals.js');
});
