/**
 * The addon's poll handles (native/poll.c) under strace: the system calls
 * libuv makes for them are paid once per connection, for every client and
 * upstream socket. Closing a handle that is polling must take its fd out of
 * epoll once: uv_close() already does (uv__poll_close -> uv__poll_stop ->
 * EPOLL_CTL_DEL), and a uv_poll_stop() before it repeated the EPOLL_CTL_DEL,
 * which then failed with ENOENT, once per connection.
 *
 * A child process drives the real addon on a loopback listening socket;
 * failing stat() calls on marker paths split its trace into phases (strace -Z
 * shows failed calls only, so a marker and the failures between markers are
 * all that is printed).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ADDON_PATH } from '../../src/native/binding.js';

const CHILD = `
const fs = require('node:fs');
const native = require(${JSON.stringify(ADDON_PATH)});
const mark = (name) => { try { fs.statSync('/aludel-poll-marker-' + name); } catch {} };
const fd = native.listenTcp('127.0.0.1', 0, 16, false);
const poll = native.pollNew(fd, () => {});
native.pollStart(poll, 1);
// One loop turn: libuv adds the fd to epoll (uv__io_poll) before it waits.
setImmediate(() => setTimeout(() => {
  mark('close');
  native.pollClose(poll);
  mark('closed');
  native.closeFd(fd);
}, 1));
`;

/** The failed system calls strace saw between the markers `from` and `to`. */
function failedBetween(trace: string, from: string, to: string): string[] {
  const lines = trace.split('\n');
  const a = lines.findIndex((l) => l.includes(`aludel-poll-marker-${from}`));
  const b = lines.findIndex((l) => l.includes(`aludel-poll-marker-${to}`));
  assert.ok(a >= 0 && b > a, `markers ${from} and ${to} in the trace:\n${trace}`);
  return lines.slice(a + 1, b).filter((l) => /= -1 E/.test(l));
}

describe('poll handles: system calls', () => {
  it('closing a polling handle makes one EPOLL_CTL_DEL, none failing', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-poll-'));
    const out = path.join(dir, 'trace');
    try {
      fs.writeFileSync(path.join(dir, 'child.cjs'), CHILD);
      execFileSync('strace', ['-f', '-Z', '-e', 'trace=epoll_ctl,newfstatat,statx,stat', '-o', out, process.execPath, path.join(dir, 'child.cjs')], { stdio: 'pipe' });
      const failed = failedBetween(fs.readFileSync(out, 'utf8'), 'close', 'closed');
      assert.deepEqual(failed, [], 'failed system calls in pollClose');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
