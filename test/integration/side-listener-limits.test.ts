/**
 * The plain side listeners (--redirect-http, --admin) cannot take the
 * descriptors the TLS listener needs. Found by testing: 1,100 idle TCP
 * connections to the redirect port (port 80, open to anyone) took every
 * descriptor of a process with a limit of 1,024, and the TLS listener's
 * accept(2) failed with EMFILE until they went. The admin listener the same.
 * Now each side listener holds at most a sixteenth of the descriptor limit
 * (transport/side-listener.ts), logs the connections it drops, and closes an
 * idle connection after its 10 s request timeout.
 *
 * Found next: the cap's worth of idle local connections to the admin
 * listener kept /metrics blind for those 10 s (node's maxConnections closed
 * every new connection), and a client reconnecting as they went kept it
 * blind for good. Now a new connection takes the place of the oldest idle
 * one, as nginx reuses its oldest idle connections (ngx_drain_connections).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { adminAddress } from '../support/metrics.js';
import { delay } from '../support/wait.js';
import { sideListenerBound } from '../../src/transport/descriptor-limit.js';

/** The server's descriptor limit: small, so that the flood below would exhaust it without the cap. */
const NOFILE = 256;
const FLOOD = 320;

let fx: StandardFixtures;
let server: Running;
let redirect: string;
let admin: string;

before(async () => {
  fx = await makeFixtures();
  server = await startAludel(serveArgs(fx, '--offload', 'userspace', '--redirect-http', '127.0.0.1:0', '--admin', '127.0.0.1:0'), {
    prefix: ['prlimit', `--nofile=${NOFILE}:${NOFILE}`, '--'],
  });
  redirect = String((await server.waitForLog((l) => l.msg === 'plain HTTP redirected to HTTPS (308)')).redirect);
  admin = await adminAddress(server);
});

after(async () => {
  await server?.stop();
  fx?.cleanup();
});

/** Opens `n` TCP connections to host:port and keeps them (those the server closes at once included). */
async function hold(address: string, n: number): Promise<net.Socket[]> {
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    await new Promise<void>((resolve) => {
      s.once('connect', () => resolve());
      s.once('error', () => resolve());
    });
    sockets.push(s);
  }
  return sockets;
}

function descriptors(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

async function tlsAnswers(): Promise<void> {
  const r = await curl(['--cacert', fx.certFile, '--resolve', `localhost:${server.port}:127.0.0.1`, '--max-time', '10', `https://localhost:${server.port}/${fx.files.mid.name}`]);
  assert.equal(r.code, 0, `the TLS listener must still answer: curl ${r.code} ${r.stderr}`);
  assert.equal(sha256(r.stdout), fx.files.mid.sha256);
}

describe('side listeners under a connection flood', () => {
  const bound = sideListenerBound(NOFILE);

  test('the bound is a sixteenth of the descriptor limit, within [4, 256]', () => {
    assert.equal(bound, 16);
    assert.equal(sideListenerBound(1_048_576), 256);
    assert.equal(sideListenerBound(32), 4);
    assert.equal(sideListenerBound(null), 256);
  });

  for (const which of ['redirect', 'admin'] as const) {
    test(`${FLOOD} idle connections to the ${which} listener: it keeps ${bound}, the TLS listener still answers, the drops are logged`, async () => {
      const pid = server.child.pid!;
      const from = server.mark();
      const sockets = await hold(which === 'redirect' ? redirect : admin, FLOOD);
      try {
        // Time for the server to accept (and drop) all of them.
        await delay(500);
        await tlsAnswers();
        assert.ok(descriptors(pid) < NOFILE - 64, `the server holds ${descriptors(pid)} descriptors of ${NOFILE}`);
        await server.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith(`connection limit reached (${which} listener: at most ${bound},`), 10_000, from);
      } finally {
        for (const s of sockets) s.destroy();
      }
    });
  }

  test(`${bound} idle connections to the admin listener: /metrics still answers, and the oldest idle one is closed for it`, async () => {
    const from = server.mark();
    const sockets = await hold(admin, bound);
    const closedOne = new Promise<number>((resolve) => sockets.forEach((s, i) => s.once('close', () => resolve(i))));
    try {
      // Before, node closed the scrape's connection unread (fetch failed) until the idle ones timed out.
      const res = await fetch(`http://${admin}/metrics`, { signal: AbortSignal.timeout(5_000) });
      assert.equal(res.status, 200);
      assert.match(await res.text(), /aludel_connections_open/);
      // An idle one made room for it (the oldest, unless earlier tests' connections were still closing).
      const none = new Promise<number>((resolve) => setTimeout(() => resolve(-1), 5_000).unref());
      assert.ok((await Promise.race([closedOne, none])) >= 0, 'no idle connection was closed to admit the scrape');
      const line = await server.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith(`connection limit reached (admin listener: at most ${bound},`) && typeof l.reclaimed === 'number', 10_000, from);
      assert.ok((line.reclaimed as number) >= 1);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  // A bounded wait: a close that never comes (a 408 left unread by this client, which never reads) fails, not hangs.
  test('an idle connection to the redirect listener is closed after its 10 s request timeout, unanswered', { timeout: 30_000 }, async () => {
    const [s] = await hold(redirect, 1);
    let got = 0;
    s!.on('data', (b: Buffer) => void (got += b.length));
    const started = Date.now();
    const closed = await new Promise<number>((resolve) => s!.once('close', () => resolve(Date.now() - started)));
    // node checks the timeout once a second (connectionsCheckingInterval); its default, 30 s, let one live up to 40 s.
    assert.ok(closed >= 9_000 && closed < 14_000, `closed after ${closed} ms`);
    assert.equal(got, 0, 'a connection that asked nothing gets no answer (nginx: no 408 for a connection idle past client_header_timeout)');
  });
});
