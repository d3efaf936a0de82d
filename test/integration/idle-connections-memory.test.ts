/**
 * Memory per idle TLS connection (issue 17), on one process and on
 * `--workers 2`: N connections finish their handshake and then send nothing;
 * the growth of VmRSS summed over the whole process tree (the primary and
 * its workers) divided by N must stay under IDLE_KIB_BOUND. Measured here at
 * about 23 KiB per connection with one process and 19 with two workers, at
 * 2,000 and at 10,000 connections (docs/data-plane.md,
 * "Worker processes": the workers add a fixed cost, not a per-connection one).
 *
 * N is 2,000 by default so the file takes about a minute on a loaded 2-CPU
 * machine; ALUDEL_IDLE_CONNECTIONS=10000 runs the full count. Each side needs
 * N descriptors: Node raises its soft limit to the hard one, so a hard limit
 * below N fails the test with what to raise (never a silent skip).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { openIdle, parseOpenFilesLimit } from '../../bench/idle-clients.js';
import { readTreeMemory, settleRss } from '../../bench/proc-memory.js';
import { serveArgs, startAludel, type LogLine } from '../support/aludel-process.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { waitUntil } from '../support/wait.js';

const CONNECTIONS = Number(process.env.ALUDEL_IDLE_CONNECTIONS ?? 2000);
/**
 * The bound: about twice what is measured (~23 KiB: the SSL object and its
 * buffers, the TLSSocket and HTTP parser objects on V8's heap), so V8 sizing
 * its heap in steps does not make the test flaky, while a per-connection
 * buffer that stays allocated fails it: OpenSSL's ~34 KiB of record buffers
 * are given back between records only thanks to SSL_MODE_RELEASE_BUFFERS
 * (native/tls.c), and keeping them per idle connection (23 + 34 KiB) would
 * cross the bound.
 */
const IDLE_KIB_BOUND = 48;
/** Descriptors beyond the connections: the process's own files, pipes, the listener, the log. */
const FD_MARGIN = 256;

let fx: Fixtures;
before(async () => {
  assert.ok(Number.isInteger(CONNECTIONS) && CONNECTIONS >= 100, `ALUDEL_IDLE_CONNECTIONS must be an integer >= 100, not ${process.env.ALUDEL_IDLE_CONNECTIONS}`);
  fx = await makeFixtures({ small: 1024 });
});
after(() => fx?.cleanup());

/** Fails (does not skip) when `pid` cannot hold CONNECTIONS descriptors. */
function assertFdRoom(pid: number, who: string): void {
  const limit = parseOpenFilesLimit(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  assert.ok(limit >= CONNECTIONS + FD_MARGIN, `${who} may open ${limit} files, fewer than the ${CONNECTIONS} connections + ${FD_MARGIN}: raise the hard limit (ulimit -Hn ${CONNECTIONS + FD_MARGIN}, or LimitNOFILE) or lower ALUDEL_IDLE_CONNECTIONS`);
}

async function measureIdle(workers: number): Promise<void> {
  assertFdRoom(process.pid, 'the test process (the client)');
  // Timeouts far beyond the test: an idle connection must stay open while it is measured.
  const p = await startAludel(serveArgs(fx, '--workers', String(workers), '--offload', 'userspace', '--idle-timeout', '10m', '--headers-timeout', '10m'), { startTimeoutMs: 30_000 });
  try {
    const root = p.child.pid!;
    const tree = readTreeMemory(root);
    assert.equal(tree.pids.length, workers === 1 ? 1 : workers + 1, `process tree ${tree.pids.join(' ')}`);
    for (const pid of tree.pids) assertFdRoom(pid, `aludel process ${pid}`);
    const target = { host: '127.0.0.1', port: p.port };
    // Warm-up: code paths, pools and first allocations are start-up costs, not per connection.
    const warm = await openIdle({ ...target, connections: 200 });
    assert.equal(warm.failed, 0, warm.errors.join('; '));
    await warm.close();
    await settleRss(() => readTreeMemory(root).rssKiB);
    const beforeKiB = readTreeMemory(root).rssKiB;
    const from = p.mark();
    const clients = await openIdle({ ...target, connections: CONNECTIONS });
    try {
      assert.equal(clients.failed, 0, `handshakes failed: ${clients.errors.join('; ')}`);
      // Every connection is accepted and logged by some process of the tree before it is counted.
      const established = (): LogLine[] => p.logs.slice(from).filter((l) => l.msg === 'TLS established');
      await waitUntil(() => established().length >= CONNECTIONS, 60_000);
      await settleRss(() => readTreeMemory(root).rssKiB);
      const afterKiB = readTreeMemory(root).rssKiB;
      assert.equal(clients.open(), CONNECTIONS, 'no idle connection was closed by the server while measured');
      const perConnection = (afterKiB - beforeKiB) / CONNECTIONS;
      const byPid = new Map<number, number>();
      for (const l of established()) byPid.set(l.pid as number, (byPid.get(l.pid as number) ?? 0) + 1);
      const split = [...byPid.values()].join('/');
      console.log(`--workers ${workers}: ${CONNECTIONS} idle TLS connections, RSS ${beforeKiB} -> ${afterKiB} KiB over ${tree.pids.length} process(es), ${perConnection.toFixed(1)} KiB each; connections per worker ${split}`);
      if (workers > 1) assert.equal(byPid.size, workers, `every worker accepted connections (split ${split})`);
      assert.ok(perConnection > 0, `RSS grew (${beforeKiB} -> ${afterKiB} KiB): the connections are measured in this tree`);
      assert.ok(perConnection < IDLE_KIB_BOUND, `${perConnection.toFixed(1)} KiB per idle TLS connection, bound ${IDLE_KIB_BOUND} KiB`);
    } finally {
      await clients.close();
    }
  } finally {
    await p.stop();
  }
}

// Handshakes run at ~250/s on a loaded 2-CPU machine (client and server share it): a minute plus that.
const timeout = 120_000 + CONNECTIONS * 20;

describe(`${CONNECTIONS} idle TLS connections after the handshake: RSS per connection, summed over the process tree`, () => {
  test(`one process: under ${IDLE_KIB_BOUND} KiB each`, { timeout }, () => measureIdle(1));
  test(`--workers 2 (primary + 2 workers): under ${IDLE_KIB_BOUND} KiB each, and both workers hold connections`, { timeout }, () => measureIdle(2));
});
