/**
 * The pure rules behind --workers and --ticket-keys (issue 17): how many
 * processes (auto), restart back-off, the primary/worker protocol and
 * environment, inspector flags kept from workers, and the session ticket key
 * formats (RFC 5077 §4 ticket protection: key name, AES-CBC, HMAC-SHA256;
 * nginx's ssl_session_ticket_key files).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { upstreamsAcross } from '../../src/cli/primary-admin.js';
import { deathsInRow, RESTART_CAP_MS, RESTART_FIRST_MS, restartDelayMs, STABLE_MS } from '../../src/cli/restart-backoff.js';
import { isToPrimary, isToWorker, withoutInspectFlags, workerRole, workersToStart, WORKER_ENV, WORKER_FDS_ENV } from '../../src/cli/worker-protocol.js';
import { MAX_WORKERS, workerCountFor } from '../../src/config/setting-values.js';
import { InvalidOptionError } from '../../src/errors.js';
import { generateTicketKey, nodeTlsTicketKey, parseTicketKey, readTicketKeyFiles, rotateTicketKeys } from '../../src/tls/ticket-keys.js';
import { exposedMode } from '../../src/config/readable-file.js';
import type { Logger } from '../../src/log/logger.js';

describe('restart back-off', () => {
  test('first restart at once-ish, then doubling, capped at 30 s', () => {
    assert.equal(restartDelayMs(1), RESTART_FIRST_MS);
    assert.equal(restartDelayMs(2), 2 * RESTART_FIRST_MS);
    assert.equal(restartDelayMs(3), 4 * RESTART_FIRST_MS);
    assert.equal(restartDelayMs(50), RESTART_CAP_MS, 'no overflow, no busy loop');
    for (let n = 1; n < 40; n++) assert.ok(restartDelayMs(n + 1) >= restartDelayMs(n), 'never shorter after another death');
  });

  test('a worker that ran STABLE_MS starts the sequence over; one that died young adds to it', () => {
    assert.equal(deathsInRow(7, STABLE_MS), 1);
    assert.equal(deathsInRow(7, STABLE_MS - 1), 8);
    assert.equal(deathsInRow(0, 5), 1);
  });
});

describe('primary/worker protocol', () => {
  test('a worker is recognised by its index and inherited sockets; anything else is no worker', () => {
    assert.deepEqual(workerRole({ [WORKER_ENV]: '2', [WORKER_FDS_ENV]: '4,5' }), { index: 2, fds: [4, 5] });
    assert.equal(workerRole({}), null);
    assert.equal(workerRole({ [WORKER_ENV]: '1' }), null, 'no sockets');
    assert.equal(workerRole({ [WORKER_ENV]: '0', [WORKER_FDS_ENV]: '4' }), null);
    assert.equal(workerRole({ [WORKER_ENV]: '1', [WORKER_FDS_ENV]: '2' }), null, 'stdio and the IPC channel are not listeners');
    assert.equal(workerRole({ [WORKER_ENV]: '1', [WORKER_FDS_ENV]: '4,x' }), null);
  });

  test('messages are checked by type in both directions', () => {
    assert.ok(isToWorker({ type: 'start', ticketKeys: null, challenges: [] }));
    assert.ok(isToWorker({ type: 'metrics', id: 1 }));
    assert.ok(isToWorker({ type: 'acme-challenge', op: 'add', challenge: { kind: 'http-01', token: 't', keyAuthorization: 't.k' } }));
    assert.ok(isToWorker({ type: 'certificates' }));
    assert.ok(!isToWorker({ type: 'hello' }));
    assert.ok(isToPrimary({ type: 'ready', addresses: [], answersTlsAlpn01: true }));
    assert.ok(!isToPrimary(null));
    assert.ok(!isToPrimary('ready'));
    assert.ok(!isToPrimary({ type: 'start' }));
  });

  test('NODE_OPTIONS reaches workers without inspector flags (a worker must never open a debugger port)', () => {
    assert.equal(withoutInspectFlags(undefined), undefined);
    assert.equal(withoutInspectFlags('--inspect --max-old-space-size=512'), '--max-old-space-size=512');
    assert.equal(withoutInspectFlags('--inspect-brk=0.0.0.0:9229 --inspect-port=0 --inspect-wait --debug-port=1 --trace-warnings'), '--trace-warnings');
    assert.equal(withoutInspectFlags('--inspector-something-else'), '--inspector-something-else', 'only the inspector flags themselves');
  });
});

describe('how many processes (--workers auto, the default)', () => {
  test('auto is the CPUs this process may use: 1 on a 1-CPU host, never 0, capped at 1024; a number is itself', () => {
    assert.equal(workerCountFor('auto'), os.availableParallelism());
    assert.equal(workerCountFor('auto', 1), 1);
    assert.equal(workerCountFor('auto', 2), 2);
    assert.equal(workerCountFor('auto', 64), 64);
    assert.equal(workerCountFor('auto', 0), 1);
    assert.equal(workerCountFor('auto', 5000), MAX_WORKERS);
    assert.equal(workerCountFor(1, 64), 1, '--workers 1: one process whatever the CPUs');
    assert.equal(workerCountFor(3, 1), 3);
  });

  test('auto stays one process where workers cannot run (no addon), saying why; a number given is kept (the primary refuses it)', () => {
    assert.deepEqual(workersToStart({ workers: 2, workersAuto: true }, null), { workers: 2, oneProcessBecause: null });
    const fallback = workersToStart({ workers: 2, workersAuto: true }, 'Cannot find module aludel.node');
    assert.equal(fallback.workers, 1);
    assert.match(fallback.oneProcessBecause ?? '', /^--workers auto: one process: .*addon, which did not load \(Cannot find module aludel\.node\)$/);
    assert.deepEqual(workersToStart({ workers: 2, workersAuto: false }, 'no addon'), { workers: 2, oneProcessBecause: null });
    assert.deepEqual(workersToStart({ workers: 1, workersAuto: true }, 'no addon'), { workers: 1, oneProcessBecause: null }, 'one CPU: one process anyway, nothing to say');
    assert.deepEqual(workersToStart({ workers: 1, workersAuto: false }, null), { workers: 1, oneProcessBecause: null });
  });
});

describe('session ticket keys', () => {
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i));

  test('nginx 80-byte key: name | HMAC-SHA256 secret (32) | AES-256 key (32), taken as it is', () => {
    const k = bytes(80);
    assert.deepEqual(parseTicketKey(k, 'k'), k);
  });

  test('nginx 48-byte key: name | AES-128 key | HMAC secret, reordered to name | HMAC | AES (RFC 5077 §4 fields)', () => {
    const k = parseTicketKey(bytes(48), 'k');
    assert.deepEqual([...k.subarray(0, 16)], [...bytes(16)], 'name');
    assert.deepEqual([...k.subarray(16, 32)], [...bytes(48).subarray(32, 48)], 'HMAC secret');
    assert.deepEqual([...k.subarray(32, 48)], [...bytes(48).subarray(16, 32)], 'AES key');
  });

  test('any other size is refused, naming the file, its size and how to make one', () => {
    for (const n of [0, 32, 64, 81]) {
      assert.throws(() => parseTicketKey(bytes(n), 'keys/t.key'), (e: unknown) => e instanceof InvalidOptionError && e.message.startsWith(`--ticket-keys: keys/t.key: ${n} bytes; a session ticket key file has exactly 80 bytes`) && e.message.includes('openssl rand 80'));
    }
  });

  test('group- or world-readable modes are flagged (the key decrypts every session it protected)', () => {
    assert.equal(exposedMode(0o100600), false);
    assert.equal(exposedMode(0o100400), false);
    assert.equal(exposedMode(0o100640), true);
    assert.equal(exposedMode(0o100604), true);
  });

  test('readTicketKeyFiles: a FIFO or a device (swapped in after the settings check) is refused by its type, not opened for reading and waited on', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-ticket-'));
    try {
      const fifo = path.join(dir, 'ticket.key');
      execFileSync('mkfifo', [fifo]);
      const silent = { warn: () => undefined } as unknown as Logger;
      for (const file of [fifo, '/dev/zero']) {
        assert.throws(() => readTicketKeyFiles([file], silent), (e: unknown) => e instanceof InvalidOptionError && e.message === `--ticket-keys: ${file}: not a regular file`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('node:tls gets a 48-byte key: name | first 16 bytes of the HMAC secret | first 16 of the AES key', () => {
    const k = bytes(80);
    assert.deepEqual(nodeTlsTicketKey(k), Buffer.concat([k.subarray(0, 16), k.subarray(16, 32), k.subarray(48, 64)]));
    const legacy = parseTicketKey(bytes(48), 'k');
    assert.equal(nodeTlsTicketKey(legacy), legacy);
  });

  test('rotation keeps [new, previous]: the previous still decrypts, older ones are dropped', () => {
    const [a, b, c] = [generateTicketKey(), generateTicketKey(), generateTicketKey()];
    assert.equal(a.length, 80);
    assert.notDeepEqual(a, b, 'random');
    assert.deepEqual(rotateTicketKeys([a], b), [b, a]);
    assert.deepEqual(rotateTicketKeys([b, a], c), [c, b]);
  });
});

describe('upstream health across workers (primary-admin.ts)', () => {
  const up = (url: string, value: number) => ({ value, labels: { upstream: url } });
  const worker = (...values: Array<{ value: number; labels: { upstream: string } }>) => [{ name: 'aludel_upstream_up', help: '', type: 'gauge', aggregator: 'min', values }];
  test('up only where every reporting worker has it in rotation; counts per upstream', () => {
    const got = upstreamsAcross([worker(up('http://a', 1), up('http://b', 0)), worker(up('http://a', 1), up('http://b', 1)), worker(up('http://a', 1))] as never);
    assert.deepEqual(got, [
      { url: 'http://a', up: true, workersUp: 3, workers: 3 },
      { url: 'http://b', up: false, workersUp: 1, workers: 2 },
    ]);
    assert.deepEqual(upstreamsAcross([]), []);
  });
});
