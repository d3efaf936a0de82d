/**
 * An upstream that sends more than it framed, with kernel TLS to the client
 * (test/support/overrun-origin.ts): from the plain origin, the 100 KiB
 * bodies go by splice, which moves exactly the framed bytes out of the
 * upstream socket and leaves the rest there. No answer may be another's,
 * and no connection is reused after an overrun. Fewer clients than the
 * host's test: the VM's crypto is emulated.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach } from 'node:test';
import type { Running } from '../support/aludel-process.js';
import { describeOverrun, startOverrun } from '../support/overrun-origin.js';
import { delta, hasKernelTls, readTlsStat, type TlsStat } from '../support/tls-stat.js';

const CLIENTS = 8;
let fronts: Awaited<ReturnType<typeof startOverrun>>;
/** The counters before each test (its check compares). */
let stat: TlsStat;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fronts = await startOverrun('kernel', 120_000);
});

beforeEach(() => {
  stat = readTlsStat();
});

after(async () => {
  await fronts?.stop();
});

function check(front: Running, upstream: 'plain' | 'TLS', urlPath: string, from: number): void {
  const d = delta(stat, readTlsStat());
  // The TLS upstream's own connections (one per request here) may be on kernel TLS too.
  if (upstream === 'plain') assert.equal(d.TlsTxSw, CLIENTS, `a kernel TX context per client connection: ${JSON.stringify(d)}`);
  else assert.ok((d.TlsTxSw ?? 0) >= CLIENTS, `a kernel TX context per client connection: ${JSON.stringify(d)}`);
  // The large bodies from the plain origin leave its socket by splice: the path that left the rest behind.
  const lines = front.logs.slice(from).filter((l) => l.msg === 'request');
  if (upstream === 'plain' && urlPath.endsWith('102400')) assert.ok(lines.length > 0 && lines.every((l) => l.body === 'splice'), JSON.stringify([...new Set(lines.map((l) => l.body))]));
}

describeOverrun('aludel proxy on kTLS', () => fronts, { clients: CLIENTS, each: 10, timeoutMs: 600_000, check });
