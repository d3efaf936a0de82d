/** `aludel run [--offload auto|kernel] -- PROGRAM ARGS...` and `aludel scan [--json]`. */
import type { Command } from 'commander';
import { InvalidOptionError } from '../errors.js';
import { checkPreload, checkRunOffload, endLike, PRELOAD_PATH, preloadEnv, RUN_STRATEGIES, runProgram, strategyText, type RunOffload, type RunStrategy } from '../run/run-program.js';
import { programWarnings } from '../run/program-check.js';
import { formatScanTable, scanHost } from '../scan/scan.js';

/**
 * What a failed start says, and the exit status, as POSIX shells report them:
 * 127 when the command is not found, 126 when it is found but cannot be
 * executed (no execute permission, a directory: execve's EACCES); 2 for a
 * usage or environment problem of our own.
 */
export function runFailure(command: string, e: NodeJS.ErrnoException): { message: string; status: number } {
  const spawned = e.syscall?.startsWith('spawn') === true;
  if (spawned && e.code === 'ENOENT') return { message: `${command}: command not found`, status: 127 };
  if (spawned && e.code === 'EACCES') return { message: `${command}: permission denied (not an executable file)`, status: 126 };
  return { message: e.message, status: 2 };
}

export function registerRunCommands(program: Command): void {
  program.enablePositionalOptions();
  program
    .command('run')
    .description('run a program that links a shared OpenSSL (1.0.2, 1.1.1 or 3.x) with its TLS handed to the kernel (no proxy hop)')
    .usage('[--offload auto|kernel] -- PROGRAM [ARGS...]')
    .argument('<program>', 'the program (searched in PATH)')
    .argument('[args...]', 'its arguments')
    .option('--offload <mode>', 'auto (warn and run when the kernel has no TLS), kernel (refuse to start then)', 'auto')
    .option(
      '--strategy <how>',
      'auto: chosen by the OpenSSL the program loads; option: OpenSSL >= 3.0 programs the kernel itself (SSL_OP_ENABLE_KTLS); keys: after each handshake the keys go to the kernel and reads/writes bypass OpenSSL (1.0.2: TLS 1.2 AES-GCM; 1.1.1 and 3.x: TLS 1.2 and 1.3, AES-GCM and ChaCha20-Poly1305)',
      'auto',
    )
    .passThroughOptions()
    .action(async (command: string, args: string[], flags: { offload: string; strategy: string }) => {
      try {
        if (flags.offload !== 'auto' && flags.offload !== 'kernel') throw new InvalidOptionError(`--offload must be auto or kernel, not ${JSON.stringify(flags.offload)}`);
        if (!RUN_STRATEGIES.includes(flags.strategy as RunStrategy)) throw new InvalidOptionError(`--strategy must be ${RUN_STRATEGIES.join(', ')}, not ${JSON.stringify(flags.strategy)}`);
        checkPreload();
        const warning = checkRunOffload(flags.offload as RunOffload);
        if (warning) process.stderr.write(`aludel run: warning: ${warning}\n`);
        for (const w of programWarnings(command, process.env)) process.stderr.write(`aludel run: warning: ${w}\n`);
        const what = strategyText(flags.strategy as RunStrategy);
        process.stderr.write(`aludel run: starting ${command} with ${PRELOAD_PATH} in LD_PRELOAD: ${what} (the preload logs one line saying which strategy it took and why)\n`);
        endLike(await runProgram(command, args, preloadEnv(process.env, flags.strategy as RunStrategy)));
      } catch (err) {
        const { message, status } = runFailure(command, err as NodeJS.ErrnoException);
        process.stderr.write(`aludel run: ${message}\n`);
        process.exit(status);
      }
    });

  program
    .command('scan')
    .description('list processes using OpenSSL or listening on TCP: OpenSSL version, ports, whether their TLS connections run on kernel TLS, and what to do (run, proxy, cache)')
    .option('--json', 'print the report as JSON')
    .action(async (flags: { json?: boolean }) => {
      try {
        const report = await scanHost();
        process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatScanTable(report));
      } catch (err) {
        process.stderr.write(`aludel scan: ${(err as Error).message}\n`);
        process.exitCode = 2;
      }
    });
}
