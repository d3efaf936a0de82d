/**
 * `npm run fuzz -- [--cases N] [--seed S] [--target serve|proxy|tcp|all]
 * [--procs P] [--lanes L] [--from K] [--replay K[,K2...]]`
 *
 * --cases is the total; with --target all it is shared out evenly. Case K of
 * a target is reproducible alone with --target T --seed S --replay K, which
 * prints the case's bytes and what the generator predicts before running it.
 * --replay K1,K2 runs those cases in order on one connection (to see what one
 * case leaves behind for the next). Exit status 1 when anything was found.
 */
import { parseArgs } from 'node:util';
import { generateCase } from './cases.js';
import { escapeBytes } from './escape.js';
import { formatReport, runTarget, type TargetReport } from './harness.js';
import { caseBytes, TARGETS, type Target } from './model.js';
import { freshSeed } from './prng.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '10000' },
    seed: { type: 'string' },
    target: { type: 'string', default: 'all' },
    procs: { type: 'string', default: '1' },
    lanes: { type: 'string', default: '16' },
    from: { type: 'string', default: '0' },
    replay: { type: 'string' },
    'probe-every': { type: 'string', default: '500' },
    'quiet-ms': { type: 'string', default: '60' },
    'long-ms': { type: 'string', default: '3000' },
    'rss-growth-mib': { type: 'string' },
    offload: { type: 'string', default: 'auto' },
  },
});

const num = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} wants a non-negative integer, got ${v}`);
  return n;
};

const seed = values.seed !== undefined ? num('seed', values.seed) >>> 0 : freshSeed();
const targets: Target[] = values.target === 'all' ? [...TARGETS] : [values.target as Target];
if (!targets.every((t) => TARGETS.includes(t))) throw new Error(`--target must be serve, proxy, tcp or all`);
const total = num('cases', values.cases);
// --replay K, or K1,K2,... to run several cases one after another on one connection (lane-state triage).
const replay = values.replay !== undefined ? values.replay.split(',').map((v) => num('replay', v)) : null;

const log = (line: string): void => void process.stdout.write(`${line}\n`);
log(`fuzz seed ${seed}: ${replay !== null ? `replaying case ${replay.join(', ')}` : `${total} cases`} against ${targets.join(', ')}`);

const reports: TargetReport[] = [];
for (const target of targets) {
  for (const k of replay ?? []) {
    const c = generateCase(target, seed, k);
    log(`case ${k} (${target}, ${c.family}): ${c.writes.length} write(s), ${caseBytes(c).length} bytes\n  "${escapeBytes(caseBytes(c), 1 << 20)}"`);
    for (const r of c.reqs) log(`  request ${r.marker} ${r.method}: ${r.verdict}${r.clear ? '' : ' (framing unclear)'}${r.closes ? ' (closes)' : ''} ${r.why.join('; ')}`);
  }
  const share = Math.floor(total / targets.length) + (targets.indexOf(target) < total % targets.length ? 1 : 0);
  const report = await runTarget({
    target,
    seed,
    cases: share,
    from: num('from', values.from),
    only: replay ?? undefined,
    procs: replay !== null ? 1 : Math.max(1, num('procs', values.procs)),
    lanes: replay !== null ? 1 : Math.max(1, num('lanes', values.lanes)),
    probeEvery: num('probe-every', values['probe-every']),
    timing: { quietMs: num('quiet-ms', values['quiet-ms']), longMs: num('long-ms', values['long-ms']) },
    rssGrowthMiB: values['rss-growth-mib'] !== undefined ? num('rss-growth-mib', values['rss-growth-mib']) : undefined,
    offload: values.offload as 'auto' | 'kernel' | 'userspace',
    log,
  });
  reports.push(report);
  log(formatReport(report));
  if (replay !== null) log(`aludel's last warnings:\n${report.logTail}`);
}

const all = reports.flatMap((r) => Object.entries(r.counts));
const found = all.reduce((a, [, n]) => a + n, 0);
log(
  `\nTOTAL seed ${seed}: cases ${reports.reduce((a, r) => a + r.cases, 0)}, crashes ${reports.reduce((a, r) => a + r.crashes, 0)}, leaked fds ${reports.reduce((a, r) => a + r.fds.leaked, 0)}, ` +
    `peak RSS ${reports.map((r) => `${r.target} ${(r.rssKiB.peak / 1024).toFixed(1)} MiB`).join(' / ')}, findings ${found}`,
);
process.exitCode = found > 0 ? 1 : 0;
