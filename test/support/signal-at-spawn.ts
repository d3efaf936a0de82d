/**
 * `aludel run` with a signal sent to itself at the worst moment of its
 * start-up: inside spawn(), right after the program was started (it runs;
 * spawn() has not returned, so nothing after it in runProgram has run).
 * kill(2) of the calling process delivers the signal before it returns
 * (POSIX), and on Linux a signal whose action is the default "terminate"
 * ends the whole process then, so the moment is exact, not a race.
 *
 *   node signal-at-spawn.js SIGNAL run [FLAGS] -- PROGRAM [ARGS...]
 *
 * Says on stderr (a pipe: written at once, Node writes pipes synchronously
 * on Linux) `signal-at-spawn: pid N` (the program's pid, so a test can
 * check whether it outlived `aludel run`) before the signal, and
 * `signal-at-spawn: program ended: CODE SIGNAL` when `aludel run` reaps the
 * program, which it does only if it survived the signal.
 */
import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import { pathToFileURL } from 'node:url';
import { CLI } from './aludel-process.js';

const [signal, ...cliArgs] = process.argv.slice(2);
if (signal === undefined || !signal.startsWith('SIG') || cliArgs[0] !== 'run') throw new Error('usage: signal-at-spawn.js SIGNAL run [FLAGS] -- PROGRAM [ARGS...]');
const program = cliArgs[cliArgs.indexOf('--') + 1];
const spawn = childProcess.spawn;
let sent = false;
childProcess.spawn = ((...a: Parameters<typeof spawn>) => {
  const child = spawn(...a);
  if (!sent && a[0] === program) {
    sent = true;
    process.stderr.write(`signal-at-spawn: pid ${child.pid}\n`);
    child.once('exit', (code, sig) => process.stderr.write(`signal-at-spawn: program ended: ${code} ${sig}\n`));
    process.kill(process.pid, signal);
  }
  return child;
}) as typeof spawn;
// The CLI's `import { spawn } from 'node:child_process'` is a live binding: this points it at the wrapper above.
syncBuiltinESMExports();
process.argv = [process.argv[0]!, CLI, ...cliArgs];
await import(pathToFileURL(CLI).href);
