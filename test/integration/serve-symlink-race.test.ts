/**
 * A directory inside the root swapped, again and again, for a symlink to one
 * outside it (renameat2 RENAME_EXCHANGE, by a python3 process beside the
 * server) while requests for its index file come in. The realpath way
 * (directories, and every file without openat2) checks the path, then opens
 * it: open(2) follows a symlink swapped in for a directory meanwhile, so the
 * file served must be checked by its descriptor. Before that check, about
 * one request in ten got the outside file.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createStaticHandler, type BodySender } from '../../src/http/static-handler.js';

const SWAPPER = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, secs = sys.argv[1].encode(), sys.argv[2].encode(), float(sys.argv[3])
end = time.time() + secs
n = 0
while time.time() < end:
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        sys.exit('renameat2: errno %d' % ctypes.get_errno())
    n += 1
print(n)
`;

/** Bodies through res, as the fallback sender does. */
const sender: BodySender = {
  async sendBody(res, fd, offset, length) {
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, offset);
    (res as http.ServerResponse).end(buf);
    return 'write';
  },
};

describe('serve, the realpath way, against a directory swapped for a symlink out of the root', () => {
  let tmp = '';
  let server: http.Server;
  let port = 0;

  before(async () => {
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-race-')));
    const root = path.join(tmp, 'root');
    fs.mkdirSync(path.join(root, 'race'), { recursive: true });
    fs.writeFileSync(path.join(root, 'race', 'index.html'), 'inside\n');
    fs.mkdirSync(path.join(tmp, 'outside'));
    fs.writeFileSync(path.join(tmp, 'outside', 'index.html'), 'OUTSIDE-SECRET\n');
    fs.symlinkSync(path.join(tmp, 'outside'), path.join(root, '.alt'));
    // No openBeneath: every request goes the realpath way, as without the addon or openat2.
    const handler = createStaticHandler({ root, sender });
    server = http.createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('never the outside file: 200 with the inside one, or a refusal', { timeout: 60_000 }, async () => {
    const root = path.join(tmp, 'root');
    const swapper = spawn('python3', ['-c', SWAPPER, path.join(root, 'race'), path.join(root, '.alt'), '4'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let swaps = '';
    swapper.stdout.on('data', (c: Buffer) => (swaps += c.toString()));
    const exited = new Promise<number | null>((resolve) => swapper.once('exit', resolve));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const seen = new Map<string, number>();
    const ask = (url: string): Promise<void> =>
      new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: url, agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const key = `${res.statusCode} ${Buffer.concat(chunks).toString().trim().slice(0, 20)}`;
            seen.set(key, (seen.get(key) ?? 0) + 1);
            resolve();
          });
        }).on('error', reject);
      });
    const until = Date.now() + 3500;
    while (Date.now() < until) await Promise.all(['/race/', '/race/index.html', '/race/', '/race/index.html'].map(ask));
    agent.destroy();
    assert.equal(await exited, 0, 'the swapper ran');
    const summary = JSON.stringify(Object.fromEntries(seen));
    assert.ok(Number(swaps) > 1000, `the directory was swapped (${swaps.trim()} times)`);
    assert.ok((seen.get('200 inside') ?? 0) > 0, `some requests found the inside file: ${summary}`);
    assert.equal([...seen.keys()].filter((k) => k.includes('OUTSIDE')).length, 0, `never the outside file: ${summary}`);
  });
});
