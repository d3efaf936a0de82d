/**
 * `aludel run`: starts a program with aludel-preload.so (native/preload.c) in
 * LD_PRELOAD, so its own OpenSSL hands its TLS to the kernel, with no proxy
 * hop. The preload picks the strategy inside the program, from the OpenSSL
 * the dynamic linker really loaded (a wrapper script, LD_LIBRARY_PATH or an
 * rpath can make that another one than the binary's own soname suggests):
 * `option` for 3.x, `keys` for 1.1.1 and 1.0.2. Node
 * cannot exec(2) in place, so the program is a child: signals the shell or
 * init send to us are passed on, and we end as it ended (same exit status,
 * same signal).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { KtlsUnavailableError, PreloadMissingError } from '../errors.js';
import { loadAddon } from '../native/binding.js';
import { kernelProblem } from '../offload/capabilities.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Built beside the addon by binding.gyp (dist/src/run -> ../../../build/Release). */
export const PRELOAD_PATH = path.resolve(here, '../../../build/Release/aludel-preload.so');

export type RunOffload = 'auto' | 'kernel';
/** auto: the preload chooses by the loaded OpenSSL; option: SSL_OP_ENABLE_KTLS (OpenSSL >= 3.0 does the rest); keys: native/preload-keys.c. */
export type RunStrategy = 'auto' | 'option' | 'keys';
export const RUN_STRATEGIES: readonly RunStrategy[] = ['auto', 'option', 'keys'];

/**
 * Signals a supervisor or shell may send that the program should get (nginx:
 * HUP reload, USR1 reopen, QUIT graceful, WINCH), and those whose default
 * action would end this process at once and leave the program running,
 * orphaned (POSIX: ALRM, IO, VTALRM and PWR terminate): the program decides
 * what they do (nginx's master catches ALRM and IO and lives on), as
 * init-style supervisors (tini, dumb-init) pass every signal on.
 */
const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGALRM', 'SIGIO', 'SIGVTALRM', 'SIGPWR'];

/**
 * LD_PRELOAD with ours appended (an existing preload, a malloc or a sanitizer,
 * keeps its place first) and the strategy for the preload: none for `auto`,
 * so a strategy left in the caller's environment cannot override the choice.
 */
export function preloadEnv(env: NodeJS.ProcessEnv, strategy: RunStrategy = 'auto', preload: string = PRELOAD_PATH): NodeJS.ProcessEnv {
  const existing = (env.LD_PRELOAD ?? '').split(/[: ]+/).filter((p) => p.length > 0 && p !== preload);
  const out: NodeJS.ProcessEnv = { ...env, LD_PRELOAD: [...existing, preload].join(':') };
  if (strategy === 'auto') delete out.ALUDEL_PRELOAD_STRATEGY;
  else out.ALUDEL_PRELOAD_STRATEGY = strategy;
  return out;
}

/** What the start-up line says the preload will do under `strategy`. */
export function strategyText(strategy: RunStrategy): string {
  switch (strategy) {
    case 'option':
      return 'if it links a shared OpenSSL >= 3.0, SSL_OP_ENABLE_KTLS goes on for every SSL_CTX and SSL it creates';
    case 'keys':
      return 'if it links a shared OpenSSL 1.0.2, 1.1.1 or 3.x, each qualifying connection goes to kernel TLS after its handshake, keys and all';
    default:
      return 'the preload picks the strategy from the OpenSSL the program loads: option for 3.x, keys for 1.1.1 and 1.0.2';
  }
}

/** Why kTLS cannot work on this kernel, or null (the same live probe `aludel serve` makes). */
export function runKernelProblem(): string | null {
  const addon = loadAddon();
  if (addon instanceof Error) return `native addon not available (${addon.message.split('\n')[0]}); run npm run build:native`;
  return process.platform === 'linux' ? kernelProblem(addon) : `kernel TLS is Linux-only (this is ${process.platform})`;
}

/** Checks what --offload asks for; returns the warning to print (auto) or throws (kernel). */
export function checkRunOffload(mode: RunOffload, problem: string | null = runKernelProblem()): string | null {
  if (problem === null) return null;
  if (mode === 'kernel') throw new KtlsUnavailableError(`--offload kernel: kTLS cannot work here: ${problem}. Fix that, or use --offload auto (the program then runs with its own userspace TLS).`);
  return `kTLS cannot work here (${problem}); the program runs with its usual userspace TLS`;
}

/** Throws PreloadMissingError when the native build did not make the preload library. */
export function checkPreload(file: string = PRELOAD_PATH): void {
  if (!fs.existsSync(file)) throw new PreloadMissingError(file);
}

/**
 * Starts the program and resolves with how it ended; signals to this process go to it meanwhile.
 *
 * The listeners go on before spawn(). Node runs signal listeners from its
 * event loop: the first process.on() for a signal installs libuv's handler
 * at once (uv_signal_start), which only records the signal, and the
 * listener runs on a later turn, after this synchronous code, when `child`
 * is set. Added after spawn(), as before, a TERM arriving in between (the
 * program already running; a loaded host can deschedule this process
 * there for many milliseconds) met the default action (POSIX: terminate):
 * this process died, no one passed the signal on, and the program was left
 * running, orphaned. A TERM (INT, HUP, QUIT) before this point still ends
 * this process by its default action, before any program exists: nothing
 * to pass on, and no program is started after it was asked to stop.
 */
export function runProgram(program: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let child: ChildProcess | null = null;
  // No pid: spawn() failed ('error' follows). Node's kill() would then signal pid 0: kill(2) sends that to our whole process group.
  const forward = (signal: NodeJS.Signals): void => {
    if (child?.pid !== undefined) child.kill(signal);
  };
  const stopForwarding = (): void => {
    for (const s of FORWARDED) process.off(s, forward);
  };
  for (const s of FORWARDED) process.on(s, forward);
  let started: ChildProcess;
  try {
    started = child = spawn(program, args, { stdio: 'inherit', env });
  } catch (err) {
    stopForwarding();
    throw err;
  }
  return new Promise((resolve, reject) => {
    started.once('error', (err) => {
      stopForwarding();
      reject(err);
    });
    started.once('exit', (code, signal) => {
      stopForwarding();
      resolve({ code, signal });
    });
  });
}

/** Signals whose default action dumps core (signal(7): action "Core"). */
const CORE_SIGNALS: ReadonlySet<NodeJS.Signals> = new Set(['SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGILL', 'SIGIOT', 'SIGQUIT', 'SIGSEGV', 'SIGSYS', 'SIGTRAP', 'SIGXCPU', 'SIGXFSZ']);

/**
 * Ends this process as the child ended: its exit status, or death by its
 * signal, so that a shell's $?, `wait`, `kill -l` and systemd (Result=signal,
 * not exit-code) see what they would see with the program alone.
 *
 * A signal is re-raised with its default disposition: node ignores SIGPIPE
 * from start-up, and may have a handler of its own for others (V8's
 * WebAssembly trap handler on SIGSEGV, libuv's for a signal still listened
 * to), so process.kill() alone did nothing for SIGPIPE and this process then
 * exited 141 (128 + 13): the same number in a shell's $?, but an exit, not a
 * death by signal, to waitpid(2) and so to every supervisor. For a signal
 * that dumps core, RLIMIT_CORE goes to 0 first: the program dumped (or did
 * not) as its own limit said; node's core, written by the re-raise, would be
 * of the wrong process and, with core_pattern "core", replace the program's
 * file in the same directory.
 */
export function endLike(result: { code: number | null; signal: NodeJS.Signals | null }, addon: ReturnType<typeof loadAddon> = loadAddon()): void {
  if (result.signal) {
    const signo = os.constants.signals[result.signal];
    process.removeAllListeners(result.signal);
    if (!(addon instanceof Error) && signo !== undefined) {
      if (CORE_SIGNALS.has(result.signal)) addon.disableCoreDumps?.();
      addon.signalDefault?.(signo);
    }
    process.kill(process.pid, result.signal);
    // Only when the signal could not end this process (an addon from an older build): 128 + number, as shells report.
    process.exit(128 + (signo ?? 0));
  }
  process.exit(result.code ?? 1);
}
