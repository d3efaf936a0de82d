/**
 * `aludel run` and `aludel scan` on this machine, whose kernel has no kTLS:
 * the preload loads into real programs, logs its one line, leaves their
 * bytes intact and node's own TLS alone; exit statuses and signals come back;
 * --offload kernel refuses; scan finds a real nginx with its port, OpenSSL,
 * strategy and TLS (more in scan-legacy.test.ts).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { hasKernelTls } from '../support/tls-stat.js';
import { runCli } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { startNginxOrigin } from '../support/nginx-origin.js';
import { aludelRun, preloadLog, startNodeHttps, startSServer } from '../support/run-origins.js';
import { reapOnExit, run } from '../support/run-process.js';
import { delay, waitUntil } from '../support/wait.js';
import type { ScanReport } from '../../src/scan/scan.js';
import { findVersionText } from '../../src/scan/proc-maps.js';

let fx: StandardFixtures;

/** The system's libcrypto.so.3, as the dynamic linker finds it. */
const SYSTEM_LIBCRYPTO = /libcrypto\.so\.3 \(libc6,x86-64\) => (\S+)/.exec(execFileSync('ldconfig', ['-p'], { encoding: 'utf8' }))?.[1] ?? '/usr/lib/x86_64-linux-gnu/libcrypto.so.3';

function systemVersionText(): string | null {
  return findVersionText(fs.readFileSync(SYSTEM_LIBCRYPTO));
}

/** dist/test/support/signal-at-spawn.js: `aludel run` signalled from inside its spawn() of the program. */
const SIGNAL_AT_SPAWN = fileURLToPath(new URL('../support/signal-at-spawn.js', import.meta.url));

/** Whether `pid` is a live process (not gone, not a zombie waiting to be reaped). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

before(async () => {
  fx = await makeFixtures();
});

after(() => fx?.cleanup());

/**
 * The preload's strategy line says what the kernel answered (setsockopt
 * TCP_ULP "tls" on a socket of its own): with no TLS ULP (this machine),
 * that kTLS is not available and connections stay in OpenSSL's userspace
 * TLS, as aludel run's own warning says; it said they were handed to
 * kernel TLS. With kTLS, the line as before (test/ktls/run-ktls.test.ts).
 */
const NO_KTLS = ', but kernel TLS is not available here \\(setsockopt TCP_ULP "tls": ENOENT, no CONFIG_TLS or tls module\\): connections stay in OpenSSL\'s userspace TLS';
const LINE = new RegExp(`^aludel-preload: pid (\\d+): strategy option \\(OpenSSL 3\\.x programs kTLS itself\\): SSL_OP_ENABLE_KTLS set on every SSL_CTX and SSL${hasKernelTls() ? '' : NO_KTLS} \\(OpenSSL 3\\.\\d+\\.\\d+\\S* .*, libssl\\.so\\.3\\)$`);
const KEYS_LINE = hasKernelTls()
  ? /^aludel-preload: pid \d+: strategy keys \(--strategy keys\): TLS 1\.2 \(AES-GCM, ChaCha20-Poly1305\) and TLS 1\.3 connections handed to kernel TLS after the handshake, both directions \(OpenSSL 3\./
  : /^aludel-preload: pid \d+: strategy keys \(--strategy keys\): kernel TLS is not available here \(setsockopt TCP_ULP "tls": ENOENT, no CONFIG_TLS or tls module\): TLS 1\.2 \(AES-GCM, ChaCha20-Poly1305\) and TLS 1\.3 connections stay in OpenSSL's userspace TLS \(OpenSSL 3\./;

describe('aludel run -- openssl s_server -WWW', { timeout: 120_000 }, () => {
  test('serves intact bytes over several connections; the preload logs exactly one line, with the server pid', async () => {
    const log = preloadLog(fx.dir, 's_server');
    const srv = await startSServer({ ...fx, wrapper: aludelRun(), env: { ALUDEL_PRELOAD_LOG: log.file } });
    try {
      for (const f of [fx.files.big, fx.files.mid, fx.files.one]) {
        const r = await curl(['-k', `https://127.0.0.1:${srv.port}/${f.name}`]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(sha256(r.stdout), f.sha256, f.name);
      }
      const lines = log.lines();
      assert.equal(lines.length, 1, `one line per process, not per context or connection: ${lines.join('\n')}`);
      const m = LINE.exec(lines[0]!);
      assert.ok(m, lines[0]);
      const pid = Number(m[1]);
      assert.notEqual(pid, srv.daemon.child.pid, 'logged by s_server, not by the aludel run wrapper');
      const stat = await run('ps', ['-o', 'ppid=,comm=', '-p', String(pid)], { timeoutMs: 5000 });
      assert.match(stat.stdout.toString().trim(), new RegExp(`^${srv.daemon.child.pid}\\s+openssl$`), 'the logging pid is the wrapper\'s openssl child');
      // What aludel run itself says, before the program starts.
      assert.match(srv.daemon.output(), /aludel run: starting openssl with \S+aludel-preload\.so in LD_PRELOAD/);
      if (!hasKernelTls()) assert.match(srv.daemon.output(), /aludel run: warning: kTLS cannot work here \(.*CONFIG_TLS/);
    } finally {
      await srv.stop();
    }
  });

  test('without ALUDEL_PRELOAD_LOG the line goes to the program\'s stderr', async () => {
    const srv = await startSServer({ ...fx, wrapper: aludelRun() });
    try {
      const r = await curl(['-k', `https://127.0.0.1:${srv.port}/${fx.files.mid.name}`]);
      assert.equal(sha256(r.stdout), fx.files.mid.sha256);
      assert.equal(srv.daemon.output().split('\n').filter((l) => LINE.test(l)).length, 1, srv.daemon.output());
    } finally {
      await srv.stop();
    }
  });
});

describe('aludel run --strategy keys -- openssl s_server -WWW', { timeout: 120_000 }, () => {
  test('TLS 1.2 and 1.3 clients get intact bytes; the preload says it runs the keys strategy', async () => {
    const log = preloadLog(fx.dir, 'keys');
    const srv = await startSServer({ ...fx, wrapper: aludelRun('--strategy', 'keys'), env: { ALUDEL_PRELOAD_LOG: log.file } });
    try {
      for (const tls of [['--tlsv1.2', '--tls-max', '1.2'], ['--tlsv1.3']]) {
        for (const f of [fx.files.big, fx.files.mid]) {
          const r = await curl(['-k', ...tls, `https://127.0.0.1:${srv.port}/${f.name}`]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(sha256(r.stdout), f.sha256, `${tls.join(' ')} ${f.name}`);
        }
      }
      const lines = log.lines();
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, KEYS_LINE);
      if (!hasKernelTls()) assert.doesNotMatch(lines[0]!, /handed to kernel TLS/, 'no claim the kernel took connections it cannot take');
      assert.match(srv.daemon.output(), /each qualifying connection goes to kernel TLS after its handshake/);
    } finally {
      await srv.stop();
    }
  });

  test('--strategy bogus is refused', async () => {
    const r = await runCli(['run', '--strategy', 'bogus', '--', 'true']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--strategy must be auto, option, keys, not "bogus"/);
  });
});

describe('aludel run leaves other programs alone', { timeout: 120_000 }, () => {
  test('node:https (node\'s bundled OpenSSL) serves intact bytes with the preload mapped, and the preload does nothing', async () => {
    const log = preloadLog(fx.dir, 'node');
    const srv = await startNodeHttps({ file: fx.files.big.path, certFile: fx.certFile, keyFile: fx.keyFile, wrapper: aludelRun(), env: { ALUDEL_PRELOAD_LOG: log.file } });
    try {
      const r = await curl(['-k', '-D', '-', '-o', `${fx.outDir}/node.bin`, `https://127.0.0.1:${srv.port}/`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout.toString(), /x-preloaded: true/i, 'the preload was in node\'s memory map');
      assert.equal(sha256(fs.readFileSync(`${fx.outDir}/node.bin`)), fx.files.big.sha256);
      assert.deepEqual(log.lines().filter((l) => /SSL_OP_ENABLE_KTLS set/.test(l)), [], 'never claims to have changed node');
    } finally {
      await srv.stop();
    }
  });

  test('a program without TLS: output unchanged, no line', async () => {
    const log = preloadLog(fx.dir, 'sh');
    const r = await runCli(['run', '--', 'sh', '-c', 'echo "$LD_PRELOAD"; echo hello'], { ALUDEL_PRELOAD_LOG: log.file, LD_PRELOAD: '' });
    assert.equal(r.code, 0, r.stderr);
    const [preload, hello] = r.stdout.trim().split('\n');
    assert.match(preload!, /^\S+\/aludel-preload\.so$/);
    assert.equal(hello, 'hello');
    assert.deepEqual(log.lines(), []);
  });

  test('an existing LD_PRELOAD keeps its place first', async () => {
    const r = await runCli(['run', '--', 'sh', '-c', 'echo "$LD_PRELOAD"'], { LD_PRELOAD: '/lib/x86_64-linux-gnu/libc.so.6' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.trim(), /^\/lib\/x86_64-linux-gnu\/libc\.so\.6:\S+\/aludel-preload\.so$/);
  });
});

describe('aludel run: how the program ended, and refusals', { timeout: 60_000 }, () => {
  test('a file that is not executable: exit 126 and the reason, as shells report it (not 2 with spawn EACCES)', async () => {
    const file = path.join(fx.dir, 'not-executable.sh');
    fs.writeFileSync(file, '#!/bin/sh\necho hi\n', { mode: 0o644 });
    for (const target of [file, fx.dir]) {
      const r = await runCli(['run', '--', target]);
      assert.equal(r.code, 126, r.stderr);
      assert.match(r.stderr, new RegExp(`aludel run: ${target.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: permission denied \\(not an executable file\\)`));
    }
  });

  test('programs the preload can never reach are named before they start: setuid to another user, static, no OpenSSL linked', async () => {
    const setuid = path.join(fx.dir, 'openssl-setuid');
    fs.copyFileSync('/usr/bin/openssl', setuid);
    fs.chownSync(setuid, 65534, 65534);
    fs.chmodSync(setuid, 0o4755);
    const cases: Array<[string[], RegExp | null]> = [
      [[setuid, 'version'], /warning: \S+openssl-setuid is set-user-ID: the dynamic linker ignores LD_PRELOAD for it/],
      [['/sbin/ldconfig', '-p'], /warning: \/sbin\/ldconfig is statically linked: LD_PRELOAD needs the dynamic linker/],
      [['true'], /warning: true links neither libssl nor libcrypto \(libc\.so\.6\): if its TLS is linked in/],
      [['openssl', 'version'], null],
    ];
    for (const [argv, expected] of cases) {
      const r = await runCli(['run', '--', ...argv]);
      assert.equal(r.code, 0, `${argv[0]}: ${r.stderr}`);
      if (expected === null) assert.doesNotMatch(r.stderr, /warning: openssl/, r.stderr);
      else assert.match(r.stderr, expected);
    }
  });

  test('exit status passes through', async () => {
    const r = await runCli(['run', '--', 'sh', '-c', 'exit 7']);
    assert.equal(r.code, 7);
  });

  test('death by signal passes through', async () => {
    const r = await runCli(['run', '--', 'sh', '-c', 'kill -TERM $$']);
    assert.equal(r.signal, 'SIGTERM');
  });

  test('death by SIGPIPE, SIGSEGV or SIGTERM passes through as that signal, not as exit 128 + n; an exit status of 141 stays an exit', async () => {
    // Node ignores SIGPIPE, so re-raising it in aludel run did nothing and it exited 141: a shell's $? is the same,
    // but waitpid(2), and so systemd and `wait`, told an exit from a death by signal.
    for (const sig of ['PIPE', 'SEGV', 'TERM'] as const) {
      const r = await runCli(['run', '--', 'sh', '-c', `ulimit -c 0; kill -${sig} $$`]);
      assert.deepEqual([r.signal, r.code], [`SIG${sig}`, null], `program killed by SIG${sig}: ${r.stderr}`);
    }
    const exit = await runCli(['run', '--', 'sh', '-c', 'exit 141']);
    assert.deepEqual([exit.signal, exit.code], [null, 141]);
  });

  test('a program killed by SIGSEGV leaves no core of aludel run (node) in its directory, even with cores allowed', async () => {
    // core_pattern "core" (this machine's): the re-raised SIGSEGV would make node write ./core over the program's own.
    assert.equal(fs.readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim(), 'core', 'core_pattern of this machine: a core file in the working directory');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-core-'));
    try {
      const child = reapOnExit(spawn('prlimit', ['--core=unlimited', '--', process.execPath, ...aludelRun().slice(1), 'sh', '-c', 'ulimit -c 0; kill -SEGV $$'], { cwd: dir, stdio: 'ignore' }));
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
      assert.deepEqual([signal, code], ['SIGSEGV', null]);
      assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('core')), [], 'no core file written by aludel run');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('SIGTERM to aludel run reaches the program', async () => {
    const child = spawn(process.execPath, [...aludelRun().slice(1), 'sh', '-c', 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.1; done'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 200 && !out.includes('ready'); i++) await delay(25);
    assert.ok(out.includes('ready'), 'program started');
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    assert.match(out, /got-term/);
    assert.equal(code, 3);
  });

  test('ALRM, IO, VTALRM and PWR to aludel run reach the program, and aludel run lives on (their default action ended it and orphaned the program)', async () => {
    const signals = ['SIGALRM', 'SIGIO', 'SIGVTALRM', 'SIGPWR'] as const;
    // By number: dash's trap knows some of these names only by number.
    const traps = signals.map((s) => `trap "echo got-${s}" ${os.constants.signals[s]}`).join('; ');
    const child = spawn(process.execPath, [...aludelRun().slice(1), 'sh', '-c', `${traps}; trap "exit 3" TERM; echo "ready $$"; while :; do sleep 0.1; done`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    try {
      await waitUntil(() => out.includes('ready'), 5000);
      for (const s of signals) {
        child.kill(s);
        await waitUntil(() => out.includes(`got-${s}`), 5000).catch(() => undefined);
        assert.match(out, new RegExp(`got-${s}`), `${s} reached the program`);
        assert.equal(child.exitCode, null, `aludel run still running after ${s}`);
        assert.equal(child.signalCode, null, `aludel run still running after ${s}`);
      }
      child.kill('SIGTERM');
      assert.equal(await exited, 3);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      // The program, orphaned if aludel run died first.
      const pid = Number(/ready (\d+)/.exec(out)?.[1]);
      if (pid > 0) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  });

  test('SIGTERM to aludel run the moment the program has started (spawn() not yet returned) reaches the program; none is left running', async () => {
    // signal-at-spawn.ts makes the gap exact: the TERM is sent from inside spawn(), right after the program started.
    const child = reapOnExit(spawn(process.execPath, [SIGNAL_AT_SPAWN, 'SIGTERM', 'run', '--', 'sleep', '30'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
    // The lines are in the pipe before the process ends; reading them may take a moment more ('end' never comes while an orphan holds the pipe).
    await waitUntil(() => /^signal-at-spawn: pid \d+$/m.test(err), 5000).catch(() => undefined);
    const pid = Number(/^signal-at-spawn: pid (\d+)$/m.exec(err)?.[1]);
    assert.ok(pid > 0, `the program was started: ${err}`);
    try {
      await waitUntil(() => /^signal-at-spawn: program ended/m.test(err), 2000).catch(() => undefined);
      assert.match(err, /^signal-at-spawn: program ended: null SIGTERM$/m, 'aludel run passed the TERM on and waited for the program');
      assert.deepEqual([code, signal], [null, 'SIGTERM'], 'and ended as the program did');
      assert.equal(running(pid), false, `the program (pid ${pid}) is not left running`);
    } finally {
      if (running(pid)) process.kill(pid, 'SIGKILL');
    }
  });

  test('a missing program: 127 and a clear message', async () => {
    const r = await runCli(['run', '--', 'no-such-program-aludel']);
    assert.equal(r.code, 127);
    assert.match(r.stderr, /no-such-program-aludel: command not found/);
  });

  test('--offload bogus is refused', async () => {
    const r = await runCli(['run', '--offload', 'bogus', '--', 'true']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--offload must be auto or kernel, not "bogus"/);
  });

  test(hasKernelTls() ? '--offload kernel runs the program (kernel has TLS)' : '--offload kernel refuses to start without kernel TLS, saying what to do', async () => {
    const r = await runCli(['run', '--offload', 'kernel', '--', 'sh', '-c', 'echo started']);
    if (hasKernelTls()) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'started');
    } else {
      assert.equal(r.code, 2);
      assert.equal(r.stdout, '', 'the program never started');
      assert.match(r.stderr, /--offload kernel: kTLS cannot work here: .*(CONFIG_TLS|modprobe tls).*--offload auto/);
    }
  });
});

async function scan(): Promise<ScanReport> {
  const r = await runCli(['scan', '--json'], undefined, 60_000);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ScanReport;
}

describe('aludel scan', { timeout: 120_000 }, () => {
  const tls = { certFile: '', keyFile: '', protocols: 'TLSv1.2 TLSv1.3', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' };

  test('lists a TLS nginx with its port, its OpenSSL, its open connection, and recommends run', async () => {
    const nginx = await startNginxOrigin({ root: fx.root, tls: { ...tls, certFile: fx.certFile, keyFile: fx.keyFile } });
    // A slow download keeps one TLS connection established while scan looks.
    const slow = reapOnExit(spawn('curl', ['-sk', '-o', '/dev/null', `https://127.0.0.1:${nginx.port}/slow/${fx.files.big.name}`], { stdio: 'ignore' }));
    try {
      await delay(500);
      const report = await scan();
      const p = report.processes.find((x) => x.pid === nginx.pid);
      assert.ok(p, `nginx pid ${nginx.pid} listed: ${report.processes.map((x) => `${x.pid} ${x.command}`).join(', ')}`);
      assert.equal(p.command, 'nginx');
      assert.deepEqual(p.listening, [{ address: '127.0.0.1', port: nginx.port, tls: 'yes', tlsNote: 'probe: TLS handshake record' }]);
      assert.match(p.openssl?.libssl ?? '', /libssl\.so\.3$/);
      assert.match(p.openssl?.version ?? '', /^3\.\d+\.\d+/);
      assert.equal(p.strategy, 'option');
      assert.equal(p.underRun, false);
      assert.ok(p.established >= 1, 'the slow download is seen');
      assert.equal(report.netAdmin, process.getuid?.() === 0);
      if (report.netAdmin) assert.equal(p.ktls, 'no', 'plain nginx: no kernel TLS');
      assert.equal(p.recommendation.action, 'run');
      const table = await runCli(['scan'], undefined, 60_000);
      const row = table.stdout.split('\n').find((l) => l.startsWith(`${nginx.pid} `));
      assert.ok(row, table.stdout);
      assert.match(row, new RegExp(`nginx\\s+3\\.\\d+\\.\\d+\\S*\\s+option\\s+yes\\s+127\\.0\\.0\\.1:${nginx.port}\\s+${report.netAdmin ? 'no' : 'unknown'}\\s+run\\s+TLS on port ${nginx.port}:`));
    } finally {
      slow.kill('SIGKILL');
      await nginx.stop();
    }
  });

  test('an nginx under aludel run is marked so', async () => {
    const nginx = await startNginxOrigin({ root: fx.root, tls: { ...tls, certFile: fx.certFile, keyFile: fx.keyFile }, wrapper: aludelRun() });
    try {
      const p = (await scan()).processes.find((x) => x.pid === nginx.pid);
      assert.ok(p);
      assert.equal(p.underRun, true);
      assert.equal(p.ktls, 'idle', 'no connection open');
    } finally {
      await nginx.stop();
    }
  });

  test('node (OpenSSL linked in) listening: TLS library not visible, proxy', async () => {
    const srv = await startNodeHttps({ file: fx.files.one.path, certFile: fx.certFile, keyFile: fx.keyFile });
    try {
      const p = (await scan()).processes.find((x) => x.pid === srv.daemon.child.pid);
      assert.ok(p);
      assert.equal(p.openssl, null);
      assert.equal(p.recommendation.action, 'proxy');
      assert.match(p.recommendation.reason, /TLS library not visible/);
      const table = await runCli(['scan'], undefined, 60_000);
      assert.match(table.stdout.split('\n').find((l) => l.startsWith(`${srv.daemon.child.pid} `)) ?? '', /TLS library not visible/);
    } finally {
      await srv.stop();
    }
  });

  test('a library path covered by a FIFO in the process\'s own mount namespace: scan reads the mapped file and does not hang', async () => {
    // A user with a user and mount namespace of their own maps a libcrypto, then mounts a FIFO over
    // its path. Through the path, scan (root) blocked on the FIFO for ever; a device there would be opened by root.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-scan-fifo-'));
    const lib = path.join(dir, 'libcrypto.so.3');
    fs.copyFileSync(SYSTEM_LIBCRYPTO, lib);
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    const mapper = `import mmap,socket,time; f=open(${JSON.stringify(lib)},'rb'); m=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ); s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(300)`;
    const script = `python3 -c "$0" > ${dir}/port & while [ ! -s ${dir}/port ]; do sleep 0.05; done; mount --bind ${dir}/fifo ${lib} && echo covered; wait`;
    const child = reapOnExit(spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, mapper], { stdio: ['ignore', 'pipe', 'inherit'] }));
    let pid = 0;
    try {
      await new Promise((resolve) => child.stdout!.once('data', resolve));
      pid = Number(execFileSync('pgrep', ['-P', String(child.pid), 'python3'], { encoding: 'utf8' }).trim());
      assert.ok(fs.statSync(`/proc/${pid}/root${lib}`).isFIFO(), 'the path, as the process sees it, is the FIFO');
      const r = await runCli(['scan', '--json'], undefined, 60_000);
      assert.equal(r.code, 0, `scan must finish: ${r.signal ?? ''} ${r.stderr}`);
      const p = (JSON.parse(r.stdout) as ScanReport).processes.find((x) => x.pid === pid);
      assert.ok(p?.openssl, r.stdout);
      assert.equal(p.openssl.libcrypto, lib);
      assert.equal(p.openssl.versionText, systemVersionText(), 'the version comes from the mapped file, not the FIFO');
    } finally {
      try {
        if (pid > 0) process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a process named with terminal escapes is listed with them written out, never raw (scan runs as root)', async () => {
    // Any user's process can set its comm (and its executable's path) to bytes that a terminal
    // obeys: this one sets the window title and reverses the text after it (a comm holds 15 bytes).
    const name = '\x1b]0;pwn\x07\u202e';
    const script = `open('/proc/self/comm','w').write(${JSON.stringify(name)}); import socket,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)`;
    const child = reapOnExit(spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] }));
    try {
      await new Promise((resolve) => child.stdout!.once('data', resolve));
      const table = await runCli(['scan'], undefined, 60_000);
      assert.equal(table.code, 0, table.stderr);
      const row = table.stdout.split('\n').find((l) => l.startsWith(`${child.pid} `));
      assert.ok(row, table.stdout);
      assert.ok(row.includes('\\x1b]0;pwn\\x07\\u{202e}'), row);
      assert.doesNotMatch(table.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/, 'no control character reaches the terminal');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
