import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openUnderRoot, resolveUnderRoot } from '../../src/http/safe-path.js';

describe('resolveUnderRoot', () => {
  let tmp = '';
  let root = '';

  before(async () => {
    tmp = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'aludel-safe-path-')));
    root = path.join(tmp, 'root');
    const outside = path.join(tmp, 'outside');
    // A sibling whose name starts with the root's name: a naive prefix check would accept it.
    const sibling = path.join(tmp, 'root-evil');
    await Promise.all([fsp.mkdir(path.join(root, 'sub'), { recursive: true }), fsp.mkdir(outside), fsp.mkdir(sibling)]);
    await fsp.mkdir(path.join(root, 'emptydir'));
    await fsp.mkdir(path.join(root, 'dir-index-out'));
    await fsp.writeFile(path.join(root, 'hello.txt'), 'hello');
    await fsp.writeFile(path.join(root, 'file with space.txt'), 'spaced');
    await fsp.writeFile(path.join(root, 'sub', 'index.html'), '<p>sub</p>');
    await fsp.writeFile(path.join(outside, 'secret.txt'), 'secret');
    await fsp.writeFile(path.join(sibling, 'x.txt'), 'evil');
    await fsp.symlink(path.join(outside, 'secret.txt'), path.join(root, 'link-out'));
    await fsp.symlink('../outside', path.join(root, 'link-out-dir'));
    await fsp.symlink('../root-evil/x.txt', path.join(root, 'link-sibling'));
    await fsp.symlink('hello.txt', path.join(root, 'link-in'));
    await fsp.symlink('sub', path.join(root, 'link-in-dir'));
    await fsp.symlink(path.join(outside, 'secret.txt'), path.join(root, 'dir-index-out', 'index.html'));
  });

  after(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  async function expectFile(urlPath: string, relative: string): Promise<void> {
    const result = await resolveUnderRoot(root, urlPath);
    assert.equal(result.kind, 'file', urlPath);
    if (result.kind === 'file') {
      assert.equal(result.path, path.join(root, relative), urlPath);
      assert.ok(result.stat.isFile());
    }
  }

  async function expectKind(urlPath: string, kind: string): Promise<void> {
    assert.equal((await resolveUnderRoot(root, urlPath)).kind, kind, urlPath);
  }

  it('serves regular files and ignores query and fragment', async () => {
    await expectFile('/hello.txt', 'hello.txt');
    await expectFile('/hello.txt?download=1#top', 'hello.txt');
    await expectFile('//hello.txt', 'hello.txt');
    await expectFile('/./hello.txt', 'hello.txt');
    await expectFile('/file%20with%20space.txt', 'file with space.txt');
    await expectFile('http://example.test/hello.txt?x', 'hello.txt');
  });

  it('serves index.html for directories, without listings: a directory without one is forbidden (nginx\'s 403), not missing', async () => {
    await expectFile('/sub/', 'sub/index.html');
    await expectKind('/emptydir/', 'forbidden');
    await expectKind('/', 'forbidden'); // the root too: nginx's 403 for a root without index.html
  });

  it('a directory named without its trailing slash is redirected there, query kept, never to another host (nginx\'s 301)', async () => {
    const location = async (urlPath: string): Promise<string | undefined> => {
      const r = await resolveUnderRoot(root, urlPath);
      return r.kind === 'redirect' ? r.location : `(${r.kind})`;
    };
    assert.equal(await location('/sub'), '/sub/');
    assert.equal(await location('/sub?page=2#top'), '/sub/?page=2');
    assert.equal(await location('//sub'), '/sub/', 'not the network-path reference //sub/');
    assert.equal(await location('/%73ub'), '/%73ub/', 'the path as sent');
    assert.equal(await location('/link-in-dir'), '/link-in-dir/');
    assert.equal(await location('/emptydir'), '/emptydir/');
    assert.equal(await location('/missing'), '(not-found)');
    // The normalised path, as nginx's Location is its normalised URI.
    assert.equal(await location('/hello.txt/../sub?q'), '/sub/?q');
    assert.equal(await location('/sub/./../sub'), '/sub/');
    assert.equal(await location('//sub/.//..//sub'), '/sub/');
    assert.equal(await location('/%73ub/../%73ub'), '/sub/');
  });

  it('reports missing paths as not-found', async () => {
    await expectKind('/missing.txt', 'not-found');
    await expectKind('/hello.txt/extra', 'not-found');
    await expectKind('/sub/missing/deeper', 'not-found');
  });

  it('a file named with a trailing slash is not found, as nginx answers (open(2) of "file/" is ENOTDIR)', async () => {
    for (const p of ['/hello.txt/', '/hello.txt/.', '/sub/../hello.txt/', '/link-in/']) await expectKind(p, 'not-found');
    await expectFile('/link-in-dir/', path.join('sub', 'index.html'));
  });

  it('follows symlinks that stay inside the root', async () => {
    await expectFile('/link-in', 'hello.txt');
    await expectFile('/link-in-dir/', 'sub/index.html');
  });

  it('refuses symlinks that lead out of the root', async () => {
    await expectKind('/link-out', 'forbidden');
    await expectKind('/link-out-dir/secret.txt', 'forbidden');
    await expectKind('/link-sibling', 'forbidden');
    await expectKind('/dir-index-out/', 'forbidden');
  });

  it('removes dot segments, plain or encoded, and merges slashes, as nginx normalises a URI (RFC 3986 §5.2.4)', async () => {
    await expectFile('/sub/../hello.txt', 'hello.txt');
    await expectFile('/sub/%2e%2e/hello.txt', 'hello.txt');
    await expectFile('/sub/.%2E/./hello.txt', 'hello.txt');
    await expectFile('/sub%2F..%2Fhello.txt', 'hello.txt');
    await expectFile('/sub//..//hello.txt', 'hello.txt');
    await expectFile('/emptydir/../sub/./../sub/index.html', 'sub/index.html');
    await expectFile('/sub/x/../', 'sub/index.html');
    await expectFile('/link-in-dir/../hello.txt', 'hello.txt');
    await expectKind('/sub/..', 'forbidden'); // "/", the root's index: there is none here
  });

  it('refuses dot-dot segments that climb above the root (400, as nginx), plain or encoded', async () => {
    await expectKind('/../outside/secret.txt', 'bad-request');
    await expectKind('/..', 'bad-request');
    await expectKind('/sub/../..', 'bad-request');
    await expectKind('/sub/../../root/hello.txt', 'bad-request');
    await expectKind('/%2e%2e/etc/passwd', 'bad-request');
    await expectKind('/a/%2E%2E%2F..%2Fx', 'bad-request');
    await expectKind('/sub%2f%2e%2e%2f%2e%2e%2foutside%2fsecret.txt', 'bad-request');
    await expectKind('/.%2e/outside/secret.txt', 'bad-request');
    await expectKind('http://example.test/../outside/secret.txt', 'bad-request');
    // Normalised first, then realpath'ed: a symlink out of the root is still refused.
    await expectKind('/sub/../link-out', 'forbidden');
    await expectKind('/sub/../link-out-dir/secret.txt', 'forbidden');
  });

  it('rejects NUL bytes and malformed encodings as bad requests', async () => {
    await expectKind('/hello.txt%00.png', 'bad-request');
    await expectKind('/%00', 'bad-request');
    await expectKind('/%zz', 'bad-request');
    await expectKind('/%', 'bad-request');
    await expectKind('/%E0%A4%A', 'bad-request');
    await expectKind('/%FF%zz', 'bad-request');
    await expectKind('/%FF%00', 'bad-request');
    await expectKind('/%FF/../..', 'bad-request');
  });

  it('names a file by escaped bytes that are not UTF-8 (a Latin-1 name), as nginx does, on Buffer paths', async () => {
    const latin1 = (name: string): Buffer => Buffer.concat([Buffer.from(root + '/'), Buffer.from(name, 'latin1')]);
    await fsp.writeFile(latin1('caf\u00e9.txt'), 'latin-1');
    await fsp.mkdir(latin1('r\u00e9p'));
    await fsp.writeFile(Buffer.concat([latin1('r\u00e9p'), Buffer.from('/index.html')]), 'index');
    await fsp.symlink(path.join(tmp, 'outside', 'secret.txt'), latin1('\u00e9-out'));
    try {
      for (const target of ['/caf%E9.txt', '/caf%e9.txt', '/sub/../caf%E9.txt', '/r%E9p/', '//r%E9p/./']) {
        const r = await resolveUnderRoot(root, target);
        assert.equal(r.kind, 'file', target);
        if (r.kind === 'file') assert.ok(Buffer.isBuffer(r.path) && r.stat.isFile(), target);
      }
      const r = await resolveUnderRoot(root, '/caf%E9.txt');
      if (r.kind === 'file') assert.deepEqual(r.path, latin1('caf\u00e9.txt'));
      await expectKind('/%FF', 'not-found');
      await expectKind('/caf%E9.txt/', 'not-found');
      await expectKind('/%E9-out', 'forbidden');
      assert.deepEqual(await resolveUnderRoot(root, '/r%E9p'), { kind: 'redirect', location: '/r%E9p/' });
      assert.deepEqual(await resolveUnderRoot(root, '/./r%e9p?q=1'), { kind: 'redirect', location: '/r%E9p/?q=1' });
    } finally {
      await fsp.rm(latin1('caf\u00e9.txt'));
      await fsp.rm(latin1('r\u00e9p'), { recursive: true });
      await fsp.rm(latin1('\u00e9-out'));
    }
  });

  it('rejects request-targets that are not paths', async () => {
    await expectKind('*', 'bad-request');
    await expectKind('', 'bad-request');
    await expectKind('example.test:443', 'bad-request');
  });
});

describe('openUnderRoot: the path handed to openat2', () => {
  /** What openUnderRoot asks the kernel to open for `target` (nothing: undefined), and what it answers. */
  function asked(target: string): { relative: string | undefined; kind: string } {
    let relative: string | undefined;
    const out = openUnderRoot((r) => {
      relative = r;
      return -os.constants.errno.ENOENT;
    }, '/srv/www', target);
    return { relative, kind: typeof out === 'string' ? out : out.kind };
  }

  it('a plain target (the shortcut) and every other form name the same file as the decoding way does', () => {
    const cases: Array<[string, string | undefined, string]> = [
      ['/f1k', 'f1k', 'not-found'],
      ['/a/b.txt', 'a/b.txt', 'not-found'],
      ['/~user/-x_y.tar.gz', '~user/-x_y.tar.gz', 'not-found'],
      ['/a..b/c.', 'a..b/c.', 'not-found'],
      // Not plain: decoded, split, "." and empty segments dropped.
      ['/a//b', 'a/b', 'not-found'],
      ['/a/./b', 'a/b', 'not-found'],
      ['/.hidden', '.hidden', 'not-found'],
      ['/%61/b', 'a/b', 'not-found'],
      ['/a%2Fb', 'a/b', 'not-found'],
      ['/a?x=/../..', 'a', 'not-found'],
      ['/a#frag', 'a', 'not-found'],
      ['https://host/a/b', 'a/b', 'not-found'],
      // Refused before any open.
      ['/a/../b', 'b', 'not-found'],
      ['/a/%2e%2e/b/./c', 'b/c', 'not-found'],
      ['/a%2F..%2Fb', 'b', 'not-found'],
      ['/%2e%2e/x', undefined, 'bad-request'],
      ['/..', undefined, 'bad-request'],
      ['/a/../../b', undefined, 'bad-request'],
      ['/a%00', undefined, 'bad-request'],
      ['/%zz', undefined, 'bad-request'],
      // Bytes that are not UTF-8 go the realpath way, on Buffer paths (resolveUnderRoot).
      ['/caf%E9.txt', undefined, 'fallback'],
      // The root itself goes the realpath way (its index file), as does any path ending in a slash:
      // it names a directory, never a file (open(2) of "file/" is ENOTDIR).
      ['/a/', undefined, 'fallback'],
      ['/a/.', undefined, 'fallback'],
      ['/', undefined, 'fallback'],
      ['/.', undefined, 'fallback'],
      ['/a/..', undefined, 'fallback'],
    ];
    for (const [target, relative, kind] of cases) assert.deepEqual(asked(target), { relative, kind }, target);
  });

  it('the path of an opened file is the root joined with it, as path.join would make it', async () => {
    const tmp = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'aludel-open-under-')));
    try {
      await fsp.mkdir(path.join(tmp, 'd'));
      await fsp.writeFile(path.join(tmp, 'd', 'f.txt'), 'x');
      for (const target of ['/d/f.txt', '/d//./f.txt', '/%64/f.txt']) {
        const out = openUnderRoot((r) => openSync(path.join(tmp, r), 'r'), tmp, target);
        assert.ok(typeof out === 'object' && out.kind === 'open', target);
        closeSync(out.fd);
        assert.equal(out.path, path.join(tmp, 'd', 'f.txt'), target);
      }
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  });
});
