/**
 * `npm run bench` (quick, under 10 minutes) and `npm run bench -- --full`:
 * the native phase (userspace TLS: this machine's kernel has no kTLS), then
 * the kernel phase inside ../shared/ktls-vm/run-in-vm (userspace and kernel
 * side by side, emulated CPU) or natively where /proc/net/tls_stat exists,
 * then one report in bench/results/<timestamp>/ and a copy in bench/results/latest/.
 * `npm run bench -- --legacy-run` runs only bench/legacy-run.ts (nginx 1.11.1 +
 * OpenSSL 1.0.2f under `aludel run` against itself alone), in the VM unless
 * this kernel has kTLS, into bench/results/<timestamp>-legacy-run/.
 * `--stalled` and `--copy-path` run only their part, on this host (no VM),
 * into bench/results/<timestamp>-stalled/ and -copy-path/. `--workers` runs
 * its part on this host, then (unless --no-kernel, or this kernel has kTLS
 * and the host part used it) again with --offload kernel in the kTLS VM, into
 * bench/results/<timestamp>-workers/.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { legacyRunTable, runLegacyRun, type LegacyRunResult } from './legacy-run.js';
import type { Environment } from './environment.js';
import { FRONTS, runPhase, type Front, type PhaseResult, type Test } from './phase.js';
import { runStalled, stalledPointsTable, stalledTable } from './stalled.js';
import { parseWorkersTests, runWorkers, workersTable, type WorkersResult } from './workers.js';
import { copyPathTable, runCopyPath } from './copy-path.js';
import { fmt, headlineRatios, ratiosTable, reportHtml, toCsv, writeCharts, type Results } from './report.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PROGRESS = 'ALUDEL_BENCH_PROGRESS ';
/** As scripts/run-tests.sh: ALUDEL_KTLS_VM names run-in-vm where ../shared is not beside the checkout (a git worktree elsewhere). */
const VM = process.env.ALUDEL_KTLS_VM ? path.resolve(process.env.ALUDEL_KTLS_VM) : path.join(REPO, '..', 'shared', 'ktls-vm', 'run-in-vm');

interface Options {
  full: boolean;
  native: boolean;
  kernel: boolean;
  loopback: boolean;
  pin: boolean;
  phase?: 'native' | 'vm';
  emulated: boolean;
  out?: string;
  updateDocs: boolean;
  legacyRun: boolean;
  stalled: boolean;
  workers: boolean;
  /** --workers: also 2 workers with a SO_REUSEPORT socket each. */
  reusePort: boolean;
  connections: string;
  repeats: string;
  fronts?: string;
  kernelOnly: boolean;
  tests?: string;
  loadConnections?: string;
  copyPath: boolean;
  baseline?: string;
}

function bar(label: string): { update(done: number, total: number, what: string): void; stop(): void } {
  const b = new cliProgress.SingleBar({ format: `${label} [{bar}] {value}/{total} {what}`, hideCursor: true, noTTYOutput: true, notTTYSchedule: 10_000 }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(done, total, what) {
      if (!started) b.start(total, done, { what });
      started = true;
      b.setTotal(total);
      b.update(done, { what });
    },
    stop: () => started && b.stop(),
  };
}

/** The inner command's options of the main bench's kernel phase (or --legacy-run) in the VM. */
function phaseVmArgs(o: Options): string[] {
  return [...(o.full ? ['--full'] : []), ...(o.loopback ? ['--loopback'] : []), ...(o.pin ? ['--pin'] : []), ...(o.legacyRun ? ['--legacy-run'] : []), ...(o.fronts ? ['--fronts', o.fronts] : []), ...(o.kernelOnly ? ['--kernel-only'] : []), ...(o.tests ? ['--tests', o.tests] : []), ...(o.loadConnections ? ['--load-connections', o.loadConnections] : [])];
}

/**
 * Runs a part in the VM: this same program with --phase vm and `inner`
 * options, its progress lines fed to our bar. `vm` are run-in-vm's own
 * options beyond the memory (-t, the hard time limit, above all).
 */
async function runInVm<T = PhaseResult>(o: Options, outFile: string, commit: string, inner = phaseVmArgs(o), label = o.legacyRun ? 'kTLS VM, legacy run' : 'kTLS VM', vm = ['-m', '4096', '-t', o.full ? '7200' : '1200']): Promise<T> {
  const args = [...vm, '-e', `ALUDEL_BENCH_COMMIT=${commit}`, '--', process.execPath, fileURLToPath(import.meta.url), '--phase', 'vm', '--emulated', '--out', outFile, ...inner];
  const b = bar(label);
  const child = spawn(VM, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    partial += d;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      const m = line.startsWith(PROGRESS) ? /^(\d+) (\d+) (.*)$/.exec(line.slice(PROGRESS.length)) : null;
      if (m) b.update(Number(m[1]), Number(m[2]), m[3]!);
      else log += `${line}\n`;
    }
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (log += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  b.stop();
  if (code !== 0) throw new Error(`the kTLS VM phase failed (exit ${code}):\n${log}`);
  return JSON.parse(await fs.promises.readFile(outFile, 'utf8')) as T;
}

/** --fronts a,b: checked against FRONTS; null without the option. */
function frontList(o: Options): Front[] | null {
  if (!o.fronts) return null;
  const list = o.fronts.split(',').map((f) => f.trim());
  const unknown = list.filter((f) => !(f in FRONTS));
  if (unknown.length > 0) throw new Error(`--fronts: unknown ${unknown.join(', ')} (known: ${Object.keys(FRONTS).join(', ')})`);
  return list as Front[];
}

const TESTS: Test[] = ['load', 'download', 'download-h2', 'file-size'];

function testList(o: Options): Test[] | null {
  if (!o.tests) return null;
  const list = o.tests.split(',').map((t) => t.trim());
  const unknown = list.filter((t) => !(TESTS as string[]).includes(t));
  if (unknown.length > 0) throw new Error(`--tests: unknown ${unknown.join(', ')} (known: ${TESTS.join(', ')})`);
  return list as Test[];
}

function connectionList(o: Options): number[] | null {
  if (!o.loadConnections) return null;
  const list = o.loadConnections.split(',').map(Number);
  if (list.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--load-connections: positive whole numbers, comma-separated (got ${o.loadConnections})`);
  return list;
}

const DOCS_BEGIN = '<!-- bench:generated (npm run bench -- --update-docs rewrites this part) -->';
const DOCS_END = '<!-- /bench:generated -->';
const LEGACY_BEGIN = '<!-- bench:legacy-run (npm run bench -- --legacy-run --update-docs rewrites this part) -->';
const LEGACY_END = '<!-- /bench:legacy-run -->';

/** Replaces the text between `begin` and `end` (markers included) in docs/benchmarks.md. */
async function rewriteDocsBlock(begin: string, end: string, block: string): Promise<void> {
  const file = path.join(REPO, 'docs', 'benchmarks.md');
  const text = await fs.promises.readFile(file, 'utf8');
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${file} has no ${begin} ... ${end} block to rewrite`);
  await fs.promises.writeFile(file, text.slice(0, a) + [begin, '', block.replace(/\n+$/, ''), '', end].join('\n') + text.slice(b + end.length));
}

/** HEAD, marked +dirty when tracked files have changes: what the results were measured on. */
function commitStamp(): string {
  return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim() + (execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO, encoding: 'utf8' }).trim() ? '+dirty' : '');
}

/**
 * A part that runs on this host only (--stalled, --workers): its result and
 * report in bench/results/<timestamp>-<name>/, and with --update-docs its
 * block of docs/benchmarks.md between `markers`.
 */
async function hostMain<R extends { command?: string; environment: Environment }>(o: Options, name: string, label: string, markers: [string, string], measure: (progress: (d: number, t: number, l: string) => void) => Promise<R>, report: (r: R) => string): Promise<void> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = path.join(REPO, 'bench', 'results', `${stamp}-${name}`);
  await fs.promises.mkdir(outDir, { recursive: true });
  process.env.ALUDEL_BENCH_COMMIT = commitStamp();
  const b = bar(label);
  let result: R;
  try {
    result = await measure((d, t, l) => b.update(d, t, l));
  } finally {
    b.stop();
  }
  result.command = `npm run bench -- ${process.argv.slice(2).join(' ')}`;
  const text = report(result);
  await fs.promises.writeFile(path.join(outDir, 'results.json'), JSON.stringify(result, null, 1));
  await fs.promises.writeFile(path.join(outDir, `${name}.md`), `${text}\n`);
  const e = result.environment;
  const load = `load average ${e.loadAverageBefore.map((x) => x.toFixed(2)).join(' ')} before / ${(e.loadAverageAfter ?? []).map((x) => x.toFixed(2)).join(' ')} after`;
  if (o.updateDocs) await rewriteDocsBlock(markers[0], markers[1], `Made by \`${result.command}\` (commit ${e.commit}, kernel ${e.kernel}, ${e.openssl}, ${e.nginx}, CPU ${e.cpuModel} x${e.cpus}, ${load}, ${e.date}).\n\n${text}`);
  console.log(`\n${text}\n\nresult: ${path.relative(process.cwd(), outDir)}/`);
}

const STALLED_BEGIN = '<!-- bench:stalled (npm run bench -- --stalled --update-docs rewrites this part) -->';
const STALLED_END = '<!-- /bench:stalled -->';
const WORKERS_BEGIN = '<!-- bench:workers (npm run bench -- --workers --update-docs rewrites this part) -->';
const WORKERS_END = '<!-- /bench:workers -->';

/** `--stalled`: memory per stalled download, aludel vs nginx, on this host (bench/stalled.ts). */
const stalledMain = (o: Options): Promise<void> =>
  hostMain(o, 'stalled', 'stalled downloads', [STALLED_BEGIN, STALLED_END], (progress) => runStalled({ connections: Number(o.connections), repeats: Number(o.repeats), progress }), (r) => `${stalledTable(r)}\n\n${stalledPointsTable(r)}`);

/** What `--workers` measured: this host's phase and/or the kTLS VM's, each with its own table. */
interface WorkersRun {
  command?: string;
  environment: Environment;
  phases: WorkersResult[];
}

/**
 * The kTLS VM part of --workers: the same bench with --offload kernel, each
 * point proven by tls_stat. Its servers (up to 24 Node processes with
 * --reuse-port) get 6 GiB; quick mode is bounded by the VM's 25-minute limit.
 */
const workersInVm = (o: Options, outFile: string, commit: string): Promise<WorkersResult> =>
  runInVm<WorkersResult>(
    o,
    outFile,
    commit,
    ['--workers', '--repeats', o.repeats, ...(o.full ? ['--full'] : []), ...(o.reusePort ? ['--reuse-port'] : []), ...(o.tests ? ['--tests', o.tests] : [])],
    'kTLS VM, workers',
    ['-m', '6144', '-t', o.full ? '7200' : '1500'],
  );

/** `--workers`: --workers 1 and 2 next to nginx's worker_processes 1 and 2, on this host, then in the kTLS VM (bench/workers.ts). */
const workersMain = (o: Options): Promise<void> =>
  hostMain<WorkersRun>(
    o,
    'workers',
    'workers',
    [WORKERS_BEGIN, WORKERS_END],
    async (progress) => {
      // Checked here too, so that a typo fails before the VM boots.
      const tests = parseWorkersTests(o.tests);
      const nativeKtls = fs.existsSync('/proc/net/tls_stat');
      const phases: WorkersResult[] = [];
      if (o.native) phases.push(await runWorkers({ full: o.full, rounds: Number(o.repeats), reusePort: o.reusePort, tests, progress }));
      if (o.kernel && !(nativeKtls && o.native)) {
        const inner = path.join(REPO, 'bench', 'results', `workers-vm-${process.pid}.json`);
        try {
          phases.push(nativeKtls ? await runWorkers({ full: o.full, rounds: Number(o.repeats), reusePort: o.reusePort, tests, progress }) : await workersInVm(o, inner, process.env.ALUDEL_BENCH_COMMIT ?? 'unknown'));
        } finally {
          await fs.promises.rm(inner, { force: true });
        }
      }
      if (phases.length === 0) throw new Error('--workers with --no-native and --no-kernel measures nothing');
      return { environment: phases[0]!.environment, phases };
    },
    workersRunReport,
  );

/** One table per phase, each under a heading that says where it ran. */
function workersRunReport(r: WorkersRun): string {
  const title = (p: WorkersResult): string => (p.environment.emulated ? `kTLS VM (${p.offload} TLS, emulated CPU x${p.environment.cpus}; ratios within this phase only)` : `this host (${p.offload} TLS, ${p.environment.cpus} CPUs)`);
  return r.phases.map((p) => (r.phases.length > 1 ? `#### ${title(p)}\n\n${workersTable(p)}` : workersTable(p))).join('\n\n');
}

const COPY_PATH_BEGIN = '<!-- bench:copy-path (npm run bench -- --copy-path --update-docs rewrites this part) -->';
const COPY_PATH_END = '<!-- /bench:copy-path -->';

/** `--copy-path`: aludel proxy vs nginx proxy_pass, userspace TLS, repeated (bench/copy-path.ts). */
const copyPathMain = (o: Options): Promise<void> =>
  hostMain(o, 'copy-path', 'copy path', [COPY_PATH_BEGIN, COPY_PATH_END], (progress) => runCopyPath({ rounds: Number(o.repeats), seconds: o.full ? 10 : 5, connections: [8, 1], loopback: o.loopback, baseline: o.baseline ?? null, progress }), copyPathTable);

/** `--legacy-run`: the one comparison, natively where the kernel has kTLS, else in the VM. */
async function legacyRunMain(o: Options): Promise<void> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = path.join(REPO, 'bench', 'results', `${stamp}-legacy-run`);
  await fs.promises.mkdir(outDir, { recursive: true });
  const commit = commitStamp();
  process.env.ALUDEL_BENCH_COMMIT = commit;
  let result: LegacyRunResult;
  const hostLoad = os.loadavg();
  if (fs.existsSync('/proc/net/tls_stat')) {
    const b = bar('legacy run');
    try {
      result = await runLegacyRun({ full: o.full, emulated: false, loopback: o.loopback, progress: (d, t, l) => b.update(d, t, l) });
    } finally {
      b.stop();
    }
  } else {
    const inner = path.join(outDir, 'vm-result.json');
    result = await runInVm<LegacyRunResult>(o, inner, commit);
    await fs.promises.rm(inner, { force: true });
  }
  if (result.environment.emulated) result.hostLoadAverage = { before: hostLoad, after: os.loadavg() };
  result.command = `npm run bench -- ${process.argv.slice(2).join(' ')}`;
  const table = legacyRunTable(result);
  await fs.promises.writeFile(path.join(outDir, 'results.json'), JSON.stringify(result, null, 1));
  await fs.promises.writeFile(path.join(outDir, 'legacy-run.md'), `${table}\n`);
  if (o.updateDocs) await rewriteDocsBlock(LEGACY_BEGIN, LEGACY_END, `Made by \`${result.command}\` (commit ${result.environment.commit}).\n\n${legacyRunTable(result, false)}`);
  const bad = result.points.filter((p) => p.ktls !== 'proven' && p.ktls !== 'userspace');
  console.log(`\n${table}\n\n${bad.length ? `WARNING: ${bad.length} point(s) without the expected kTLS state: ${bad.map((p) => `${p.mode} #${p.repeat + 1} ${p.ktls}`).join(', ')}\n` : ''}result: ${path.relative(process.cwd(), outDir)}/`);
}

/** docs/benchmarks.md keeps its prose; the part between the markers is this run's command, environment, ratios and charts. */
async function updateDocs(res: Results, chartDir: string, charts: string[]): Promise<void> {
  const docDir = path.join(REPO, 'docs', 'benchmarks');
  await fs.promises.rm(docDir, { recursive: true, force: true });
  await fs.promises.mkdir(docDir, { recursive: true });
  for (const c of charts) await fs.promises.copyFile(path.join(chartDir, c), path.join(docDir, c));
  const env = res.phases
    .map((p) => {
      const e = p.environment;
      return `- ${p.points[0]?.phase}: commit ${e.commit}, kernel ${e.kernel}, ${e.openssl}, ${e.nginx}, CPU ${e.cpuModel} x${e.cpus}, emulated: ${e.emulated ? `**yes** (${e.emulatedReason})` : 'no'}, load average ${e.loadAverageBefore.map((x) => x.toFixed(2)).join(' ')} before / ${(e.loadAverageAfter ?? []).map((x) => x.toFixed(2)).join(' ')} after, ${e.network}, power: ${e.rapl}, crypto floor ${fmt(p.cryptoFloorCpuPerGB)} CPU-s/GB (${e.date})`;
    })
    .join('\n');
  await rewriteDocsBlock(DOCS_BEGIN, DOCS_END, [`Made by \`${res.command}\` (${res.mode} mode).`, '', env, '', ratiosTable(res.ratios), '', ...charts.map((c) => `![${c}](benchmarks/${c})\n`)].join('\n'));
}

async function main(): Promise<void> {
  const o = new Command()
    .name('npm run bench --')
    .option('--full', 'the full matrix (10 s points, 3 rounds, all sizes) instead of the quick mode', false)
    .option('--no-native', 'skip the native (userspace) phase')
    .option('--no-kernel', 'skip the kernel phase (kTLS VM or native kTLS)')
    .option('--loopback', 'client on loopback instead of its own network namespace + veth', false)
    .option('--pin', 'pin the servers to CPU 0 and the client to CPU 1 (taskset)', false)
    .option('--update-docs', 'copy the charts to docs/benchmarks/ and rewrite the generated part of docs/benchmarks.md (with --legacy-run: its own part)', false)
    .option('--legacy-run', 'only nginx 1.11.1 + OpenSSL 1.0.2f (../shared/legacy/build) under aludel run vs alone, CPU-s/GB (in the kTLS VM unless this kernel has kTLS)', false)
    .option('--stalled', 'only memory per stalled download: 1,000 TLS downloads that stop reading, aludel vs nginx (proxy and serve), on this host', false)
    .option('--workers', 'only worker processes: aludel serve, proxy and proxy --cache with --workers 1 and 2 next to nginx worker_processes 1 and 2 (1 KiB req/s, 10 MiB MB/s, handshakes/s with ECDSA and RSA certificates, RSS per idle connection), on this host, then with kTLS in the kTLS VM (--no-kernel: not; --no-native: the VM only)', false)
    .option('--fronts <list>', `only these fronts, comma-separated, and no record-size sweeps (of: ${Object.keys(FRONTS).join(', ')})`)
    .option('--kernel-only', 'in the kTLS VM phase, only the kernel offload (userspace TLS is measured natively, on the real CPU): half the VM time', false)
    .option('--tests <list>', 'only these tests, comma-separated (of: load, download, download-h2, file-size; with --workers of: rps, throughput, handshakes, handshakes-rsa, idle), e.g. load,download for the headline ratios alone')
    .option('--load-connections <list>', 'the load test at these wrk connection counts only, comma-separated (default 1,8,16,64)')
    .option('--copy-path', 'only the proxy copy path: aludel proxy vs nginx proxy_pass, userspace TLS, 10 MiB at 8 and 1 connections, --repeats rounds (--full: 10 s points), on this host', false)
    .option('--baseline <dir>', 'with --copy-path: also run the aludel build of this checkout (its dist/ and build/), in the same turns')
    .option('--connections <n>', 'with --stalled: stalled downloads per point', '1000')
    .option('--reuse-port', 'with --workers: also 2 workers with a listening socket each (Aludel --reuse-port, nginx listen ... reuseport), compared with the shared socket in the same rounds', false)
    .option('--repeats <n>', 'with --stalled, --workers and --copy-path: repeats (each runs every server once, in turns)', '3')
    .option('--phase <where>', '(internal) run one phase and write it to --out')
    .option('--emulated', '(internal) the phase runs on an emulated CPU', false)
    .option('--out <file>', '(internal) where --phase writes its result')
    .parse()
    .opts<Options>();

  if (o.phase && o.legacyRun) {
    const result = await runLegacyRun({ full: o.full, emulated: o.emulated, loopback: o.loopback, progress: (d, t, l) => console.log(`${PROGRESS}${d} ${t} ${l}`) });
    await fs.promises.writeFile(o.out!, JSON.stringify(result));
    return;
  }
  if (o.phase && o.workers) {
    // Inner --workers phase (in the VM): kernel TLS, smaller points, progress as lines for the outer bar.
    const result = await runWorkers({ full: o.full, rounds: Number(o.repeats), reusePort: o.reusePort, tests: parseWorkersTests(o.tests, o.emulated), emulated: o.emulated, progress: (d, t, l) => console.log(`${PROGRESS}${d} ${t} ${l}`) });
    await fs.promises.writeFile(o.out!, JSON.stringify(result));
    return;
  }
  if (o.legacyRun) return legacyRunMain(o);
  if (o.stalled) return stalledMain(o);
  if (o.workers) return workersMain(o);
  if (o.copyPath) return copyPathMain(o);
  if (o.phase) {
    // Inner phase (in the VM): progress as lines for the outer bar.
    const result = await runPhase({ phase: o.phase, full: o.full, offloads: o.kernelOnly ? ['kernel'] : ['userspace', 'kernel'], fronts: frontList(o), tests: testList(o), loadConnections: connectionList(o), emulated: o.emulated, loopback: o.loopback, pin: o.pin, progress: (d, t, l) => console.log(`${PROGRESS}${d} ${t} ${l}`) });
    await fs.promises.writeFile(o.out!, JSON.stringify(result));
    return;
  }

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = path.join(REPO, 'bench', 'results', stamp);
  await fs.promises.mkdir(outDir, { recursive: true });
  const commit = commitStamp();
  process.env.ALUDEL_BENCH_COMMIT = commit;
  const phases: PhaseResult[] = [];
  const nativeKtls = fs.existsSync('/proc/net/tls_stat');
  if (o.native) {
    const b = bar('native');
    try {
      // With native kTLS both offloads run here and the VM is not needed.
      phases.push(await runPhase({ phase: 'native', full: o.full, offloads: nativeKtls && o.kernel ? ['userspace', 'kernel'] : ['userspace'], fronts: frontList(o), tests: testList(o), loadConnections: connectionList(o), emulated: false, loopback: o.loopback, pin: o.pin, progress: (d, t, l) => b.update(d, t, l) }));
    } finally {
      b.stop();
    }
  }
  if (o.kernel && !nativeKtls) phases.push(await runInVm(o, path.join(outDir, 'vm-phase.json'), commit));

  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const results: Results = { command, mode: o.full ? 'full' : 'quick', phases, ratios: phases.flatMap(headlineRatios) };
  const points = phases.flatMap((p) => p.points);
  await fs.promises.writeFile(path.join(outDir, 'results.json'), JSON.stringify(results, null, 1));
  await fs.promises.writeFile(path.join(outDir, 'results.csv'), toCsv(points));
  await fs.promises.rm(path.join(outDir, 'vm-phase.json'), { force: true });
  const charts = await writeCharts(path.join(outDir, 'charts'), points);
  await fs.promises.writeFile(path.join(outDir, 'report.html'), reportHtml(results, charts));
  await fs.promises.writeFile(path.join(outDir, 'ratios.md'), `${ratiosTable(results.ratios)}\n`);
  const latest = path.join(REPO, 'bench', 'results', 'latest');
  await fs.promises.rm(latest, { recursive: true, force: true });
  await fs.promises.cp(outDir, latest, { recursive: true });
  if (o.updateDocs) await updateDocs(results, path.join(outDir, 'charts'), charts);
  const fell = points.filter((p) => p.ktls === 'FELL BACK').length;
  console.log(`\n${ratiosTable(results.ratios)}\n\n${fell ? `WARNING: ${fell} kernel-mode point(s) fell back to userspace (no tls_stat rise)\n` : ''}report: ${path.relative(process.cwd(), path.join(outDir, 'report.html'))} (copied to bench/results/latest/)`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
