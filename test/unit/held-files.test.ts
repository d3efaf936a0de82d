/**
 * held-files.ts: what the primary records of a load, how a starting worker
 * reads from that copy (not the disk), and the private copies OpenSSL reads;
 * a serving worker's reload reads the copy the primary sent with it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { dropHeldFiles, MAX_HELD_BYTES, noteCarried, recordReads, useHeldFiles, withHeldCopies, withHeldFiles, WORKER_FILES_ENV } from '../../src/config/held-files.js';
import { readSmallRegularFileSync, unreadableFileReason } from '../../src/config/readable-file.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'held-files-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('held-files', () => {
  test('the recorded bytes answer a worker\'s reads while it starts, whatever the disk holds; dropped, the disk answers', async () => {
    const a = path.join(dir, 'a.pem');
    fs.writeFileSync(a, 'first', { mode: 0o600 });
    const { text } = recordReads(() => void readSmallRegularFileSync(a, 100));
    assert.ok(text !== null);
    fs.rmSync(a);
    const env: NodeJS.ProcessEnv = { [WORKER_FILES_ENV]: text };
    useHeldFiles(true, env);
    try {
      assert.equal(env[WORKER_FILES_ENV], undefined, 'taken out of the environment: no child inherits it');
      assert.equal(readSmallRegularFileSync(a, 100).toString(), 'first');
      assert.equal(await unreadableFileReason(a), null);
      const seen = withHeldCopies([{ certFile: a, keyFile: path.join(dir, 'other.key') }], (pairs) => {
        const copy = pairs[0]!.certFile;
        assert.notEqual(copy, a);
        assert.equal(fs.readFileSync(copy, 'utf8'), 'first');
        assert.equal(fs.statSync(copy).mode & 0o077, 0, 'private to its user');
        assert.equal(pairs[0]!.keyFile, path.join(dir, 'other.key'), 'a file not held is passed as it is');
        return copy;
      });
      assert.equal(fs.existsSync(seen), false, 'the copy is gone once OpenSSL has read it');
    } finally {
      dropHeldFiles();
    }
    assert.throws(() => readSmallRegularFileSync(a, 100), /no such file/);
  });

  test('not a worker: the variable is removed and ignored; a load that throws records nothing', () => {
    const env: NodeJS.ProcessEnv = { [WORKER_FILES_ENV]: JSON.stringify({ [path.join(dir, 'x')]: [0o600, 'eA=='] }) };
    useHeldFiles(false, env);
    assert.equal(env[WORKER_FILES_ENV], undefined);
    assert.throws(() => readSmallRegularFileSync(path.join(dir, 'x'), 100), /no such file/);
    assert.throws(() => recordReads(() => {
      throw new Error('bad pem');
    }), /bad pem/);
  });

  test('a reload reads the copy it came with, whatever the disk holds; after it (even a failed one) the disk answers', async () => {
    const b = path.join(dir, 'b.pem');
    fs.writeFileSync(b, 'checked', { mode: 0o600 });
    const { text } = recordReads(() => void readSmallRegularFileSync(b, 100));
    assert.ok(text !== null);
    fs.writeFileSync(b, 'saved after the check');
    assert.equal(await withHeldFiles(text, async () => readSmallRegularFileSync(b, 100).toString()), 'checked');
    assert.equal(readSmallRegularFileSync(b, 100).toString(), 'saved after the check');
    await assert.rejects(withHeldFiles(text, async () => { throw new Error('reload failed'); }), /reload failed/);
    assert.equal(readSmallRegularFileSync(b, 100).toString(), 'saved after the check');
    assert.equal(await withHeldFiles(null, async () => readSmallRegularFileSync(b, 100).toString()), 'saved after the check', 'nothing held: the disk');
  });

  test('a carried CA bundle too large to hold beside the pairs is left out, named; the pair is still held', async () => {
    const key = path.join(dir, 'pair.key');
    fs.writeFileSync(key, 'the key', { mode: 0o600 });
    const bundle = path.join(dir, 'bundle.pem');
    // As the system bundle (some 200 KiB): alone, more than the environment string can take.
    const big = Buffer.alloc(MAX_HELD_BYTES, 'A');
    const r = recordReads(() => {
      readSmallRegularFileSync(key, 100);
      noteCarried(bundle, big);
    });
    assert.deepEqual(r.leftOut, [bundle]);
    assert.ok(r.text !== null, 'the pair is held');
    fs.rmSync(key);
    assert.equal(await withHeldFiles(r.text, async () => readSmallRegularFileSync(key, 100).toString()), 'the key');
    fs.writeFileSync(key, 'the key', { mode: 0o600 });
    const small = recordReads(() => {
      readSmallRegularFileSync(key, 100);
      noteCarried(bundle, Buffer.from('a small bundle'));
    });
    assert.deepEqual(small.leftOut, [], 'a bundle that fits is held with the rest');
    assert.equal(await withHeldFiles(small.text, async () => readSmallRegularFileSync(bundle, 100).toString()), 'a small bundle');
  });
});
