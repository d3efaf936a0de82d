/**
 * The main log on stdout, a pipe its reader stopped reading (a supervisor or
 * log shipper that hung): the server keeps answering, its memory stays
 * bounded, lines past the queue (16 MiB, as the access log file's) are
 * dropped and counted, and once the pipe is read again one line says how
 * many were lost; SIGTERM still ends it. pino wrote stdout synchronously:
 * once the pipe was full, the write blocked the event loop and every
 * connection with it (nginx's error_log writes never wait on a reader).
 * Real CLI, real h2load; the access log goes to stdout (JSON, the default)
 * with a 4 KB user-agent, so 6000 requests make about 27 MB of lines.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CLI, serveArgs, withWorkers } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { acceptsWithin, freePort } from '../support/loopback-port.js';
import { reapOnExit, run } from '../support/run-process.js';
import { waitUntil } from '../support/wait.js';

let fx: StandardFixtures;

before(async () => {
  fx = await makeFixtures();
});
after(() => fx?.cleanup());

interface Unread {
  child: ChildProcess;
  port: number;
  stderr(): string;
}

/** aludel serve with stdout a pipe nobody reads (spawned with 'pipe', never read until the test says). */
async function startUnread(): Promise<Unread> {
  const port = await freePort();
  const child = reapOnExit(spawn(process.execPath, [CLI, ...withWorkers(serveArgs(fx, '--listen', `127.0.0.1:${port}`))], { stdio: ['ignore', 'pipe', 'pipe'] }));
  child.stdout!.pause();
  let err = '';
  child.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
  assert.ok(await acceptsWithin(port, 10_000, () => child.exitCode === null), `it listens: ${err}`);
  return { child, port, stderr: () => err };
}

/** 6000 requests with a 4 KB user-agent over HTTP/2: about 27 MB of access-log lines on stdout. */
async function flood(port: number): Promise<void> {
  const ua = 'u'.repeat(4000);
  const h2 = await run('h2load', ['-n', '6000', '-c', '10', '-m', '10', '-H', `user-agent: ${ua}`, `https://127.0.0.1:${port}/${fx.files.one.name}`], { timeoutMs: 60_000 });
  assert.match(h2.stdout.toString(), /6000 succeeded/, h2.stdout.toString().slice(-600));
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => { clearTimeout(t); resolve(true); });
  });
}

describe('the main log on a stdout pipe nobody reads', { timeout: 180_000 }, () => {
  test('HTTPS keeps answering, RSS stays bounded; once read, the log is whole lines and says how many were dropped', async () => {
    const s = await startUnread();
    try {
      const rssBefore = rssKiB(s.child.pid!);
      await flood(s.port);
      const r = await curl(['--cacert', fx.certFile, '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}', `https://localhost:${s.port}/${fx.files.one.name}`]);
      assert.equal(r.stdout.toString(), '200', `answers while stdout is full: ${r.stderr}`);
      // The same load with stdout read grows RSS by 60-100 MB here (HTTP/2 sessions, the heap): this
      // bounds it loosely; what was held for the log is bounded exactly by the bytes read below.
      const grown = rssKiB(s.child.pid!) - rssBefore;
      assert.ok(grown < 256 * 1024, `RSS grew ${grown} KiB`);

      let out = '';
      s.child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
      s.child.stdout!.resume();
      const note = (): Record<string, unknown> | undefined => out.split('\n').filter((l) => l.includes('"log lines dropped')).map((l) => JSON.parse(l) as Record<string, unknown>)[0];
      await waitUntil(() => note() !== undefined, 20_000).catch(() => undefined);
      const n = note();
      assert.ok(n, `a line says lines were dropped; stdout ends: ${out.slice(-300)}`);
      assert.equal(n.level, 40);
      assert.ok(Number(n.dropped) > 0 && n.queueMax === 16 * 1024 * 1024, JSON.stringify(n));
      // The 16 MiB queue, the socket pair's buffers and the reader's 16 KiB: not the ~27 MB logged.
      assert.ok(Buffer.byteLength(out) < 16 * 1024 * 1024 + 4 * 1024 * 1024, `${Buffer.byteLength(out)} bytes were held for the reader`);
      const lines = out.split('\n').slice(0, -1);
      for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `a whole JSON line: ${l.slice(0, 120)}`);
      assert.ok(lines.filter((l) => l.includes('"msg":"request"')).length < 6000, 'some request lines were dropped, not queued without end');
    } finally {
      s.child.kill('SIGKILL');
      await exited(s.child, 5_000);
    }
  });

  test('SIGTERM ends it while stdout is still unread (the exit flush gives up in bounded time)', async () => {
    const s = await startUnread();
    try {
      await flood(s.port);
      s.child.kill('SIGTERM');
      assert.ok(await exited(s.child, 20_000), `exited after SIGTERM: ${s.stderr()}`);
      assert.equal(s.child.exitCode, 0, s.stderr());
    } finally {
      if (s.child.exitCode === null) s.child.kill('SIGKILL');
      await exited(s.child, 5_000);
    }
  });
});
