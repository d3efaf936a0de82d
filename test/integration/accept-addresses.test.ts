/**
 * A connection's addresses come from accept4 and the listener, as nginx
 * takes them (ngx_event_accept, ngx_connection_local_sockaddr): accept4
 * fills in the peer's address, and a listener bound to one address is every
 * connection's local address. A getpeername and a getsockname per connection
 * were two system calls of about 33 per full handshake. A wildcard listener's
 * connections still ask getsockname which of the host's addresses they came
 * to. The access log's client must stay the client's own address and port.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { waitUntil } from '../support/wait.js';

let fx: StandardFixtures;
before(async () => {
  fx = await makeFixtures();
});
after(() => fx?.cleanup());

const CONNECTIONS = 4;

/** One request on a new connection to `host`; curl's own (local) port, which the server sees as the peer's. */
async function getFrom(p: Running, host: string): Promise<number> {
  const r = await curl(['-s', '-o', '/dev/null', '-w', '%{http_code} %{local_port}', '--max-time', '5', '--cacert', fx.certFile, '--resolve', `localhost:${p.port}:${host}`, `https://localhost:${p.port}/${fx.files.one.name}`]);
  const [status, port] = r.stdout.toString().split(' ');
  assert.equal(status, '200', r.stderr.toString());
  return Number(port);
}

/** The access log's `client` of each request line, in order. */
function clients(p: Running): string[] {
  return p.logs.filter((l) => typeof l.client === 'string' && l.status === 200).map((l) => l.client as string);
}

/** Stops the server itself (not strace in front of it, which would leave it running) and waits for strace to finish. */
async function stopTraced(p: Running): Promise<void> {
  const pid = p.logs.find((l) => typeof l.pid === 'number')?.pid as number;
  process.kill(pid, 'SIGTERM');
  if (p.child.exitCode === null) await new Promise((resolve) => p.child.once('exit', resolve));
}

describe('accepted connections: addresses from accept4 and the listener', { timeout: 60_000 }, () => {
  it('on a listener bound to 127.0.0.1: the client as curl sees itself, and no getpeername or getsockname per connection', async () => {
    const trace = path.join(fx.outDir, 'accept-addresses.trace');
    const p = await startAludel(serveArgs(fx), { prefix: ['strace', '-f', '-qq', '-o', trace, '-e', 'trace=accept4,getpeername,getsockname'] });
    const ports: number[] = [];
    try {
      for (let i = 0; i < CONNECTIONS; i++) ports.push(await getFrom(p, '127.0.0.1'));
      await waitUntil(() => clients(p).length >= CONNECTIONS, 5_000);
      assert.deepEqual(clients(p), ports.map((port) => `127.0.0.1:${port}`));
    } finally {
      await stopTraced(p);
    }
    const lines = fs.readFileSync(trace, 'utf8').split('\n');
    // accept4(19, {...}, [16], SOCK_CLOEXEC|SOCK_NONBLOCK) = 20: the connections' descriptors.
    const accepted = new Set(lines.map((l) => /accept4\(.*\) = (\d+)$/.exec(l)?.[1]).filter((fd): fd is string => fd !== undefined));
    assert.equal(accepted.size > 0, true, `accept4 in the trace:\n${lines.join('\n')}`);
    const asked = lines.filter((l) => {
      const m = /(getpeername|getsockname)\((\d+),/.exec(l);
      return m !== null && accepted.has(m[2]!);
    });
    assert.deepEqual(asked, [], 'system calls asking an accepted socket its addresses');
  });

  it('on a wildcard listener (0.0.0.0): the client as curl sees itself', async () => {
    const p = await startAludel(serveArgs(fx, '--listen', '0.0.0.0:0'));
    try {
      const ports: number[] = [];
      for (let i = 0; i < 2; i++) ports.push(await getFrom(p, '127.0.0.1'));
      await waitUntil(() => clients(p).length >= 2, 5_000);
      assert.deepEqual(clients(p), ports.map((port) => `127.0.0.1:${port}`));
    } finally {
      await p.stop();
    }
  });
});
