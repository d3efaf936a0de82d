/**
 * file-validators.ts: the per-file ETag, Last-Modified and Content-Type kept
 * while the fstat says the same file must equal what is computed afresh, and
 * follow every change of the file.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Stats } from 'node:fs';
import { makeEtag } from '../../src/http/conditional.js';
import { validatorsFor, VALIDATORS_KEPT } from '../../src/http/file-validators.js';

const NOW = Date.UTC(2030, 0, 2, 3, 4, 5, 678);

function stat(over: Partial<Pick<Stats, 'dev' | 'ino' | 'size' | 'mtimeMs'>> = {}): Stats {
  return { dev: 1, ino: 2, size: 1024, mtimeMs: NOW - 86_400_000 + 250, ...over } as Stats;
}

function expected(file: string, s: Stats, now: number): { etag: string; lastModifiedText: string } {
  const lm = new Date(Math.floor(Math.min(s.mtimeMs, now) / 1000) * 1000);
  return { etag: makeEtag(s), lastModifiedText: lm.toUTCString() };
}

describe('file validators', () => {
  it('are those computed afresh, and the same object while nothing changed', () => {
    const s = stat();
    const a = validatorsFor('/srv/a.html', s, NOW);
    assert.equal(a.etag, expected('/srv/a.html', s, NOW).etag);
    assert.equal(a.lastModifiedText, expected('/srv/a.html', s, NOW).lastModifiedText);
    assert.equal(a.lastModified.getTime() % 1000, 0, 'one-second resolution');
    assert.equal(a.contentType, 'text/html; charset=utf-8');
    assert.equal(validatorsFor('/srv/a.html', stat(), NOW + 5000), a);
  });

  it('follow a change of size, mtime, inode or device, and the name decides the type', () => {
    const file = '/srv/b.json';
    const first = validatorsFor(file, stat(), NOW);
    for (const change of [{ size: 1025 }, { mtimeMs: NOW - 1000 }, { ino: 3 }, { dev: 9 }]) {
      const s = stat(change);
      const v = validatorsFor(file, s, NOW);
      assert.equal(v.etag, expected(file, s, NOW).etag, JSON.stringify(change));
      assert.equal(v.lastModifiedText, expected(file, s, NOW).lastModifiedText, JSON.stringify(change));
      if ('ino' in change || 'dev' in change) assert.notEqual(v, first, 'another inode is another entry');
    }
    assert.equal(validatorsFor('/srv/b.bin', stat(), NOW).contentType, 'application/octet-stream');
    assert.equal(validatorsFor(file, stat(), NOW).contentType, 'application/json; charset=utf-8');
  });

  it('a file stamped in the future says now, whatever was kept (RFC 9110 §8.8.2.1)', () => {
    const future = stat({ mtimeMs: NOW + 60_000 });
    const a = validatorsFor('/srv/c.txt', future, NOW);
    assert.equal(a.lastModifiedText, new Date(Math.floor(NOW / 1000) * 1000).toUTCString());
    const later = validatorsFor('/srv/c.txt', future, NOW + 10_000);
    assert.equal(later.lastModifiedText, new Date(Math.floor((NOW + 10_000) / 1000) * 1000).toUTCString());
    // Once the clock has passed the mtime, the mtime itself.
    assert.equal(validatorsFor('/srv/c.txt', future, NOW + 120_000).lastModifiedText, new Date(Math.floor((NOW + 60_000) / 1000) * 1000).toUTCString());
  });

  it('stay right past the number of files kept', () => {
    for (let i = 0; i < VALIDATORS_KEPT * 2 + 3; i++) {
      const s = stat({ ino: 1000 + i, size: i });
      assert.equal(validatorsFor(`/srv/many/${i}.css`, s, NOW).etag, makeEtag(s));
    }
    const s = stat({ ino: 1000, size: 0 });
    assert.equal(validatorsFor('/srv/many/0.css', s, NOW).etag, makeEtag(s));
  });
});
