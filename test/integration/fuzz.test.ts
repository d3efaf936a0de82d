/**
 * 2,000 fuzz cases (test/fuzz) against `aludel serve`, `aludel proxy` in front
 * of the strict recording origin, and `aludel tcp` in front of an echo
 * upstream, with a fixed seed (FUZZ_SEED overrides it), so a failure names a
 * case that `npm run fuzz -- --target T --seed S --replay K` reproduces.
 *
 * Any finding fails. The bugs this fuzzer found earlier (repeated Host and
 * huge Content-Length answered 502, underscore names forwarded, CONNECT
 * unanswered, pipelined 400s overtaking owed responses, Host not validated)
 * are fixed and stay covered here: their cases are in every run.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { formatFinding, runTarget, type TargetReport } from '../fuzz/harness.js';
import type { Finding, Target } from '../fuzz/model.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_260_612) >>> 0;
const SHARE: Record<Target, number> = { serve: 700, proxy: 700, tcp: 600 };

/** The run's health: the process itself. */
const HEALTH = new Set(['crash', 'liveness', 'fd-leak', 'rss', 'connect', 'no-response', 'tcp-echo', 'tcp-bytes']);
/** What reached the origin. */
const ORIGIN = new Set(['forwarded-invalid', 'unattributed', 'smuggled', 'duplicate-forward', 'forwarded-after-reject', 'forwarded-after-close', 'hop-by-hop-forwarded', 'spoof-forwarded', 'underscore-forwarded']);

/**
 * Not fixed yet (reported; src/proxy/http-proxy.ts upgrade()): a request with
 * Connection: Upgrade skips the request checks (invalid or repeated Host, GET *,
 * Transfer-Encoding, its body) and its answer is written straight to the
 * connection, ahead of responses still owed to earlier pipelined requests.
 */
const upgradeCase = (f: Finding): boolean => f.target === 'proxy' && (f.bytes ?? '').includes('\\r\\nUpgrade: ') && /Connection:[^\\]*Upgrade/i.test(f.bytes ?? '');

describe('fuzz: 2,000 cases across serve, proxy and tcp', { timeout: 180_000 }, () => {
  const reports: TargetReport[] = [];
  const findings = (pick: (f: Finding) => boolean): Finding[] => reports.flatMap((r) => r.findings).filter(pick);
  const show = (fs: Finding[]): string => `${fs.length} finding(s), seed ${SEED}:\n${fs.slice(0, 5).map(formatFinding).join('\n')}`;

  before(async () => {
    for (const target of ['serve', 'proxy', 'tcp'] as const) {
      // 8 lanes: two CPUs are shared by Aludel, the origin and this client.
      reports.push(await runTarget({ target, seed: SEED, cases: SHARE[target], lanes: 8, probeEvery: 100, keepPerKind: 50 }));
    }
  });

  after(() => {
    for (const r of reports) {
      const mib = (k: number): string => (k / 1024).toFixed(1);
      process.stdout.write(
        `# ${r.target}: ${r.cases} cases, ${r.casesPerSecond.toFixed(0)}/s; fds ${r.fds.start}/${r.fds.peak}/${r.fds.settled}; RSS MiB ${mib(r.rssKiB.start)}/${mib(r.rssKiB.peak)}/${mib(r.rssKiB.end)}; ${JSON.stringify(r.counts)}\n`,
      );
    }
  });

  test('every case ran, within bounded time', () => {
    assert.equal(reports.length, 3);
    for (const r of reports) assert.equal(r.cases, SHARE[r.target], `${r.target} ran all its cases`);
    for (const r of reports) assert.ok(r.seconds < 50, `${r.target} took ${r.seconds.toFixed(1)} s`);
  });

  test('no crash, probes answered with the right bytes, descriptors back, RSS bounded', () => {
    for (const r of reports) {
      assert.equal(r.crashes, 0, `${r.target} crashed`);
      assert.ok(r.probes >= SHARE[r.target] / 100, `${r.target}: ${r.probes} liveness probes`);
      assert.ok(r.fds.leaked <= 3, `${r.target}: fds ${r.fds.start} at the start, ${r.fds.settled} at the end`);
    }
    const bad = findings((f) => HEALTH.has(f.kind));
    assert.equal(bad.length, 0, show(bad));
  });

  test('the origin saw only strict, whole requests the client sent: no smuggling, none twice, none after a refusal', () => {
    const proxy = reports.find((r) => r.target === 'proxy')!;
    assert.ok((proxy.origin?.requests ?? 0) > 100, `requests reached the origin: ${JSON.stringify(proxy.origin)}`);
    const bad = findings((f) => ORIGIN.has(f.kind));
    assert.equal(bad.length, 0, show(bad));
  });

  test('responses: no 5xx, none missing, extra, reordered or wrong', () => {
    const bad = findings((f) => !HEALTH.has(f.kind) && !ORIGIN.has(f.kind));
    assert.equal(bad.length, 0, show(bad));
  });

  test('no finding of any kind, counting those past keepPerKind', () => {
    for (const r of reports) {
      for (const [kind, n] of Object.entries(r.counts)) assert.equal(n, 0, `${r.target}: ${n} ${kind} finding(s)`);
    }
  });

  test('proxy: Upgrade requests are checked and answered in order like any other', () => {
    const bad = findings(upgradeCase);
    assert.equal(bad.length, 0, show(bad));
  });
});
