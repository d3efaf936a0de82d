import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { contentTypeFor } from '../../src/http/content-type.js';

describe('contentTypeFor', () => {
  it('adds utf-8 to text, javascript and json', () => {
    assert.equal(contentTypeFor('/srv/index.html'), 'text/html; charset=utf-8');
    assert.equal(contentTypeFor('/srv/a.CSS'), 'text/css; charset=utf-8');
    assert.match(contentTypeFor('/srv/app.js'), /javascript; charset=utf-8$/);
    assert.equal(contentTypeFor('/srv/data.json'), 'application/json; charset=utf-8');
    assert.equal(contentTypeFor('/srv/site.webmanifest'), 'application/manifest+json; charset=utf-8');
  });

  it('leaves binary types alone', () => {
    assert.equal(contentTypeFor('/srv/a.png'), 'image/png');
    assert.equal(contentTypeFor('/srv/a.tar.gz'), 'application/gzip');
  });

  it('falls back to octet-stream', () => {
    assert.equal(contentTypeFor('/srv/README'), 'application/octet-stream');
    assert.equal(contentTypeFor('/srv/json'), 'application/octet-stream');
    assert.equal(contentTypeFor('/srv/.bashrc'), 'application/octet-stream');
    assert.equal(contentTypeFor('/srv/a.unknownext'), 'application/octet-stream');
  });
});
