/**
 * --workers 2 --admin: the primary's /metrics sums the workers' counters, and
 * a Prometheus counter never goes backwards except when the server restarts
 * (prometheus.io "Metric types": a counter "can only increase or be reset to
 * zero on restart"; rate() reads any decrease as a reset and counts the whole
 * new value as an increase, a spike). A worker killed and restarted by the
 * primary, or one that does not answer the scrape (stopped with SIGSTOP),
 * must not take its share of the counts out of the sum: nginx's stub_status
 * counters live in shared memory and survive a worker's death the same way.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { scrape, total } from '../support/metrics.js';

const FILES = { small: { name: 'small.bin', size: 1000 } };
let fx: Fixtures<keyof typeof FILES>;

before(async () => {
  fx = await makeFixtures(FILES);
});
after(() => fx?.cleanup());

/** `n` requests, each on a connection of its own (curl without --parallel opens one per URL here: Connection: close). */
async function requests(port: number, n: number): Promise<void> {
  const url = `https://localhost:${port}/${FILES.small.name}`;
  const r = await curl(['--cacert', fx.certFile, '-H', 'Connection: close', '-w', '%{http_code}\\n', ...Array.from({ length: n }, () => ['-o', '/dev/null', url]).flat()], 60_000);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.toString().trim().split('\n'), Array.from({ length: n }, () => '200'));
}

const connections = async (admin: string): Promise<number> => total((await scrape(admin)).samples, 'aludel_connections_total');
const handshakes = async (admin: string): Promise<number> => total((await scrape(admin)).samples, 'aludel_handshakes_total', { result: 'ok' });

describe('--workers 2 --admin: summed counters never go backwards', () => {
  test('a worker stopped (SIGSTOP) or killed (-9) and restarted keeps its counts in the sum; new counts add to them', { timeout: 120_000 }, async () => {
    const p = await startAludel(serveArgs(fx, '--workers', '2', '--admin', '127.0.0.1:0'));
    try {
      const ready = await p.waitForLog((l) => Array.isArray(l.workerPids));
      const pids = ready.workerPids as number[];
      const admin = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
      const from = p.mark();
      await requests(p.port, 24);
      const served = p.logs.slice(from).filter((l) => l.msg === 'TLS established');
      assert.equal(served.length, 24);
      // The victim must hold some of the counts for the test to mean anything; the kernel picks the worker.
      const victim = pids.map((pid) => ({ pid, n: served.filter((l) => l.pid === pid).length })).sort((a, b) => b.n - a.n)[0]!;
      assert.ok(victim.n > 0);
      assert.equal(await connections(admin), 24, 'the sum of both workers');

      process.kill(victim.pid, 'SIGSTOP');
      try {
        // It does not answer the scrape (left out after 2 s): its counts must still be there.
        assert.equal(await connections(admin), 24, 'a stopped worker\'s counts stay in the sum');
      } finally {
        process.kill(victim.pid, 'SIGCONT');
      }

      const mark = p.mark();
      process.kill(victim.pid, 'SIGKILL');
      const died = await p.waitForLog((l) => l.workerPid === victim.pid && l.signal === 'SIGKILL', 10_000, mark);
      await p.waitForLog((l) => l.msg === 'worker ready' && l.worker === died.worker, 20_000, mark);
      assert.equal(await connections(admin), 24, 'a dead worker\'s counts stay in the sum after its replacement starts');
      assert.equal(await handshakes(admin), 24, 'so do its handshakes');

      await requests(p.port, 8);
      assert.equal(await connections(admin), 32, 'new connections add to the kept counts');
      // A second scrape changes nothing: the dead worker's counts are kept once, not added at each scrape.
      assert.equal(await connections(admin), 32);
    } finally {
      await p.stop();
    }
  });
});
