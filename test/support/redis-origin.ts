/**
 * Debian's redis-server as a plain-TCP legacy backend for `aludel tcp`: on
 * 127.0.0.1 only, no persistence, its working directory in os.tmpdir() (the
 * rest of the filesystem is read-only in the kTLS VM).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnDaemon, waitReady } from './daemon.js';
import { freePort } from './loopback-port.js';
import { run } from './run-process.js';

export interface RedisOrigin {
  port: number;
  stop(): Promise<void>;
}

/** Attempts when another process takes the free port before redis binds it. */
const PORT_ATTEMPTS = 3;

/** `redis-cli -p port ping` answered PONG. */
async function pong(port: number): Promise<boolean> {
  const r = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'ping'], { timeoutMs: 2000 });
  return r.code === 0 && r.stdout.toString('utf8').trim() === 'PONG';
}

export async function startRedis(): Promise<RedisOrigin> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-redis-'));
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      // --save '' and --appendonly no: nothing is written to --dir; --logfile '': the log goes to stdout.
      const redis = spawnDaemon('redis-server', [
        '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', dir, '--daemonize', 'no', '--logfile', '',
      ]);
      try {
        // The "Ready" line proves this process bound the port; PONG proves it answers there.
        await waitReady(
          redis,
          'redis-server (Debian packages redis-server, redis-tools)',
          async () => redis.output().includes('Ready to accept connections') && (await pong(port)),
          async () => redis.output(),
        );
      } catch (err) {
        await redis.stop();
        if (attempt < PORT_ATTEMPTS && redis.output().includes('Address already in use')) continue;
        throw err;
      }
      return {
        port,
        async stop() {
          await redis.stop();
          await fs.promises.rm(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (err) {
    await fs.promises.rm(dir, { recursive: true, force: true });
    throw err;
  }
}
