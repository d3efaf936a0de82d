import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildUpstreamRequestHead, fieldRole, filterResponseHeaders, HOP_BY_HOP, sameUpstreamRequest, type UpstreamRequestInput } from '../../src/http/forward-headers.js';
import { InvalidRequestError } from '../../src/errors.js';

function build(overrides: Partial<UpstreamRequestInput> = {}): string {
  return buildUpstreamRequestHead({
    method: 'GET',
    url: '/path?q=1',
    rawHeaders: ['Host', 'example.com', 'Accept', '*/*'],
    clientAddress: '192.0.2.7',
    proto: 'https',
    trustForwarded: false,
    bodyFraming: 'none',
    keepAlive: true,
    ...overrides,
  });
}

/** The head's lines without the final empty line; asserts the CRLFCRLF ending. */
function lines(head: string): string[] {
  assert.ok(head.endsWith('\r\n\r\n'), JSON.stringify(head));
  assert.equal(head.indexOf('\r\n\r\n'), head.length - 4, 'exactly one blank line, at the end');
  return head.slice(0, -4).split('\r\n');
}

/** Values of the fields named `name` (case-insensitive), in order. */
function field(head: string, name: string): string[] {
  return lines(head)
    .slice(1)
    .filter((line) => line.slice(0, line.indexOf(':')).toLowerCase() === name.toLowerCase())
    .map((line) => line.slice(line.indexOf(':') + 1).trim());
}

function rejects(overrides: Partial<UpstreamRequestInput>, pattern: RegExp): void {
  assert.throws(
    () => build(overrides),
    (err: unknown) => err instanceof InvalidRequestError && err.code === 'ERR_BAD_REQUEST' && pattern.test(err.message),
  );
}

describe('buildUpstreamRequestHead', () => {
  it('builds a complete head with the forwarding fields and framing', () => {
    assert.equal(
      build(),
      'GET /path?q=1 HTTP/1.1\r\n' +
        'Host: example.com\r\n' +
        'Accept: */*\r\n' +
        'X-Forwarded-For: 192.0.2.7\r\n' +
        'X-Forwarded-Proto: https\r\n' +
        'X-Forwarded-Host: example.com\r\n' +
        'Forwarded: for=192.0.2.7;proto=https;host=example.com\r\n' +
        'Connection: keep-alive\r\n' +
        '\r\n',
    );
  });

  it('keeps other fields in order with names and values as sent, Host first', () => {
    const head = build({ rawHeaders: ['accept', 'a', 'hOsT', 'Example.COM:8443', 'Cookie', 'a=1', 'cookie', 'b=2', 'X-Empty', ''] });
    assert.deepEqual(lines(head).slice(0, 6), ['GET /path?q=1 HTTP/1.1', 'hOsT: Example.COM:8443', 'accept: a', 'Cookie: a=1', 'cookie: b=2', 'X-Empty: ']);
  });

  it('drops hop-by-hop fields, Expect and the client\'s framing', () => {
    const head = build({
      method: 'POST',
      rawHeaders: [
        'Host', 'h', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Proxy-Connection', 'keep-alive', 'TE', 'trailers',
        'Trailer', 'X-Sum', 'Transfer-Encoding', 'chunked', 'Content-Length', '99', 'Upgrade', 'h2c', 'Expect', '100-continue',
        'Proxy-Authorization', 'Basic eDp5', 'X-Kept', 'yes',
      ],
      bodyFraming: 'length',
      contentLength: 12,
    });
    assert.deepEqual(lines(head), [
      'POST /path?q=1 HTTP/1.1',
      'Host: h',
      'X-Kept: yes',
      'X-Forwarded-For: 192.0.2.7',
      'X-Forwarded-Proto: https',
      'X-Forwarded-Host: h',
      'Forwarded: for=192.0.2.7;proto=https;host=h',
      'Content-Length: 12',
      'Connection: keep-alive',
    ]);
  });

  it('removes the fields the client\'s Connection names, but never Host', () => {
    const head = build({
      rawHeaders: ['Host', 'h', 'Connection', 'X-Secret , host', 'connection', 'authorization,,', 'X-Secret', '1', 'Authorization', 'Bearer t', 'X-Other', '2'],
    });
    assert.deepEqual(field(head, 'x-secret'), []);
    assert.deepEqual(field(head, 'authorization'), []);
    assert.deepEqual(field(head, 'host'), ['h']);
    assert.deepEqual(field(head, 'x-other'), ['2']);
  });

  it('cannot be made to drop the fields it generates', () => {
    const head = build({ rawHeaders: ['Host', 'h', 'Connection', 'X-Forwarded-For, Forwarded, Content-Length'], bodyFraming: 'length', contentLength: 3 });
    assert.deepEqual(field(head, 'x-forwarded-for'), ['192.0.2.7']);
    assert.deepEqual(field(head, 'forwarded'), ['for=192.0.2.7;proto=https;host=h']);
    assert.deepEqual(field(head, 'content-length'), ['3']);
  });

  it('replaces the framing with its own', () => {
    const chunked = build({ method: 'POST', rawHeaders: ['Host', 'h', 'Content-Length', '5'], bodyFraming: 'chunked' });
    assert.deepEqual(field(chunked, 'transfer-encoding'), ['chunked']);
    assert.deepEqual(field(chunked, 'content-length'), []);
    const length = build({ method: 'POST', rawHeaders: ['Host', 'h', 'Transfer-Encoding', 'chunked'], bodyFraming: 'length', contentLength: 0 });
    assert.deepEqual(field(length, 'content-length'), ['0']);
    assert.deepEqual(field(length, 'transfer-encoding'), []);
    const none = build({ rawHeaders: ['Host', 'h', 'Content-Length', '0', 'Transfer-Encoding', 'chunked'] });
    assert.deepEqual([...field(none, 'content-length'), ...field(none, 'transfer-encoding')], []);
  });

  it('asks for close or keep-alive as told', () => {
    assert.deepEqual(field(build({ keepAlive: false, rawHeaders: ['Host', 'h', 'Connection', 'keep-alive'] }), 'connection'), ['close']);
    assert.deepEqual(field(build({ keepAlive: true, rawHeaders: ['Host', 'h', 'Connection', 'close'] }), 'connection'), ['keep-alive']);
  });

  it('sends Connection: upgrade and the Upgrade protocol for a tunnel', () => {
    const head = build({
      rawHeaders: ['Host', 'h', 'Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version', '13'],
      upgrade: 'websocket',
      keepAlive: false,
    });
    assert.deepEqual(lines(head).slice(-2), ['Connection: upgrade', 'Upgrade: websocket']);
    assert.deepEqual(field(head, 'connection'), ['upgrade']);
    assert.deepEqual(field(head, 'sec-websocket-key'), ['dGhlIHNhbXBsZSBub25jZQ==']);
  });

  describe('forwarding fields', () => {
    const spoofed = [
      'Host', 'h',
      'X-Forwarded-For', '203.0.113.9',
      'X-Forwarded-Proto', 'http',
      'X-Forwarded-Host', 'evil.example',
      'Forwarded', 'for=203.0.113.9',
      'x-forwarded-for', '198.51.100.1',
      'X_Forwarded_For', '203.0.113.10',
      'x_forwarded_host', 'evil.example',
      'X-Real_Name', 'dropped',
      'Transfer_Encoding', 'chunked',
      'X-Real-Name', 'kept',
      'X-Real-IP', '203.0.113.11',
    ];

    it('replaces the client\'s when not trusted, and drops every name with an underscore', () => {
      const head = build({ rawHeaders: spoofed });
      assert.deepEqual(field(head, 'x-forwarded-for'), ['192.0.2.7']);
      assert.deepEqual(field(head, 'x-forwarded-proto'), ['https']);
      assert.deepEqual(field(head, 'x-forwarded-host'), ['h']);
      assert.deepEqual(field(head, 'forwarded'), ['for=192.0.2.7;proto=https;host=h']);
      assert.deepEqual(field(head, 'x_forwarded_for'), []);
      assert.deepEqual(field(head, 'x_forwarded_host'), []);
      // CGI maps "_" and "-" alike (RFC 3875 §4.1.18): Transfer_Encoding would be read as the framing field.
      assert.deepEqual(field(head, 'x-real_name'), []);
      assert.deepEqual(field(head, 'transfer_encoding'), []);
      assert.deepEqual(field(head, 'x-real-name'), ['kept']);
      assert.deepEqual(field(head, 'x-real-ip'), [], 'a spoofed client address');
    });

    it('appends to the client\'s when trusted, keeping its original proto and host', () => {
      const head = build({ rawHeaders: spoofed, trustForwarded: true });
      assert.deepEqual(field(head, 'x-forwarded-for'), ['203.0.113.9, 198.51.100.1, 192.0.2.7']);
      assert.deepEqual(field(head, 'x-forwarded-proto'), ['http']);
      assert.deepEqual(field(head, 'x-forwarded-host'), ['evil.example']);
      assert.deepEqual(field(head, 'forwarded'), ['for=203.0.113.9, for=192.0.2.7;proto=https;host=h']);
      // Underscore spellings are never trusted.
      assert.deepEqual(field(head, 'x_forwarded_for'), []);
      assert.deepEqual(field(head, 'x-real-ip'), ['203.0.113.11']);
    });

    it('sets its own when trusted and the client sent none', () => {
      const head = build({ trustForwarded: true, rawHeaders: ['Host', 'h', 'X-Forwarded-For', ''] });
      assert.deepEqual(field(head, 'x-forwarded-for'), ['192.0.2.7']);
      assert.deepEqual(field(head, 'x-forwarded-proto'), ['https']);
      assert.deepEqual(field(head, 'x-forwarded-host'), ['h']);
      assert.deepEqual(field(head, 'forwarded'), ['for=192.0.2.7;proto=https;host=h']);
    });

    it('quotes and brackets IPv6 in Forwarded (RFC 7239 §6)', () => {
      const head = build({ clientAddress: '2001:db8::1', rawHeaders: ['Host', 'h'] });
      assert.deepEqual(field(head, 'x-forwarded-for'), ['2001:db8::1']);
      assert.deepEqual(field(head, 'forwarded'), ['for="[2001:db8::1]";proto=https;host=h']);
    });

    it('adds the client port when given, quoted', () => {
      assert.deepEqual(field(build({ clientPort: 47011 }), 'forwarded'), ['for="192.0.2.7:47011";proto=https;host=example.com']);
      assert.deepEqual(field(build({ clientAddress: '::1', clientPort: 4711 }), 'forwarded'), ['for="[::1]:4711";proto=https;host=example.com']);
      assert.deepEqual(field(build({ clientPort: 47011 }), 'x-forwarded-for'), ['192.0.2.7']);
    });

    it('gives IPv4-mapped addresses as IPv4', () => {
      const head = build({ clientAddress: '::ffff:192.0.2.7' });
      assert.deepEqual(field(head, 'x-forwarded-for'), ['192.0.2.7']);
      assert.deepEqual(field(head, 'forwarded'), ['for=192.0.2.7;proto=https;host=example.com']);
    });

    it('says unknown for a client that has no IP address', () => {
      const head = build({ clientAddress: '', clientPort: 1 });
      assert.deepEqual(field(head, 'x-forwarded-for'), ['unknown']);
      assert.deepEqual(field(head, 'forwarded'), ['for=unknown;proto=https;host=example.com']);
    });

    it('each request gets its own client whatever came before (the last address is remembered, never mixed up)', () => {
      const seq: Array<[string, number, string, string]> = [
        ['2001:db8::1', 1, '2001:db8::1', 'for="[2001:db8::1]:1"'],
        ['2001:db8::1', 2, '2001:db8::1', 'for="[2001:db8::1]:2"'],
        ['::ffff:192.0.2.7', 3, '192.0.2.7', 'for="192.0.2.7:3"'],
        ['192.0.2.7', 4, '192.0.2.7', 'for="192.0.2.7:4"'],
        ['', 5, 'unknown', 'for=unknown'],
        ['::1', 6, '::1', 'for="[::1]:6"'],
        ['not an address', 7, 'unknown', 'for=unknown'],
        ['2001:db8::1', 8, '2001:db8::1', 'for="[2001:db8::1]:8"'],
      ];
      for (const [clientAddress, clientPort, xff, node] of seq) {
        const head = build({ clientAddress, clientPort });
        assert.deepEqual(field(head, 'x-forwarded-for'), [xff], clientAddress);
        assert.deepEqual(field(head, 'forwarded'), [`${node};proto=https;host=example.com`], clientAddress);
      }
    });

    it('quotes a host with a port or IPv6 literal, escaping quotes', () => {
      assert.deepEqual(field(build({ rawHeaders: ['Host', 'example.com:8443'] }), 'forwarded'), ['for=192.0.2.7;proto=https;host="example.com:8443"']);
      assert.deepEqual(field(build({ rawHeaders: ['Host', '[::1]:8443'] }), 'forwarded'), ['for=192.0.2.7;proto=https;host="[::1]:8443"']);
      assert.deepEqual(field(build({ rawHeaders: ['Host', 'a"b\\c'] }), 'forwarded'), ['for=192.0.2.7;proto=https;host="a\\"b\\\\c"']);
    });
  });

  describe('Host and the request target', () => {
    it('sends an empty Host and no X-Forwarded-Host when the client sent none (HTTP/1.0)', () => {
      const head = build({ rawHeaders: ['Accept', '*/*'] });
      assert.equal(lines(head)[1], 'Host:');
      assert.deepEqual(field(head, 'x-forwarded-host'), []);
      assert.deepEqual(field(head, 'forwarded'), ['for=192.0.2.7;proto=https']);
    });

    it('turns an absolute-form target into origin-form with its authority as Host', () => {
      const head = build({ url: 'HTTP://other.example:8080/a/../b?x=1', rawHeaders: ['Host', 'example.com'] });
      assert.deepEqual(lines(head).slice(0, 2), ['GET /a/../b?x=1 HTTP/1.1', 'Host: other.example:8080']);
      assert.deepEqual(field(head, 'x-forwarded-host'), ['other.example:8080']);
      assert.equal(lines(build({ url: 'https://h.example' }))[0], 'GET / HTTP/1.1');
      assert.equal(lines(build({ url: 'https://h.example?q' }))[0], 'GET /?q HTTP/1.1');
      assert.equal(lines(build({ method: 'OPTIONS', url: 'https://h.example' }))[0], 'OPTIONS * HTTP/1.1');
    });

    it('leaves origin-form, asterisk-form and other schemes alone', () => {
      assert.equal(lines(build({ url: '//double/slash' }))[0], 'GET //double/slash HTTP/1.1');
      assert.equal(lines(build({ method: 'OPTIONS', url: '*' }))[0], 'OPTIONS * HTTP/1.1');
      assert.equal(lines(build({ url: '/http://x/' }))[0], 'GET /http://x/ HTTP/1.1');
    });
  });

  describe('rejections', () => {
    it('refuses CR, LF, NUL and other controls in values', () => {
      for (const value of ['a\r\nX-Injected: 1', 'a\nb', 'a\rb', 'a\0b', 'a\x7fb']) {
        rejects({ rawHeaders: ['Host', 'h', 'X', value] }, /control character in the value of header field X/);
      }
      rejects({ rawHeaders: ['Host', 'h\r\nX: y'] }, /control character/);
    });

    it('refuses names that are not tokens', () => {
      rejects({ rawHeaders: ['Bad Name', 'v'] }, /header field name "Bad Name" is not a token/);
      rejects({ rawHeaders: ['X:\r\n', 'v'] }, /is not a token/);
    });

    it('refuses more than one Host', () => {
      rejects({ rawHeaders: ['Host', 'a', 'host', 'a'] }, /more than one Host/);
    });

    it('refuses a method or target that could split the request line', () => {
      rejects({ method: 'GET /x HTTP/1.1\r\nX:' }, /method/);
      rejects({ method: '' }, /method/);
      rejects({ url: '/a b' }, /request target/);
      rejects({ url: '/a\r\nX: y' }, /request target/);
      rejects({ url: '' }, /empty request target/);
    });

    it('refuses an absolute-form target without a valid authority', () => {
      rejects({ url: 'http:///path' }, /no valid authority/);
      rejects({ url: 'https://user:pw@h/' }, /no valid authority/);
    });

    it('refuses an invalid Content-Length or Upgrade', () => {
      rejects({ bodyFraming: 'length' }, /Content-Length undefined/);
      rejects({ bodyFraming: 'length', contentLength: -1 }, /Content-Length -1/);
      rejects({ bodyFraming: 'length', contentLength: 1.5 }, /Content-Length 1.5/);
      rejects({ upgrade: '' }, /Upgrade "" names no protocol/);
      rejects({ upgrade: 'websocket\r\nX: y' }, /Upgrade/);
    });
  });
});

describe('filterResponseHeaders', () => {
  const upstream = [
    'Content-Type', 'text/html',
    'Connection', 'keep-alive, X-Internal',
    'Keep-Alive', 'timeout=5',
    'Transfer-Encoding', 'chunked',
    'Set-Cookie', 'a=1',
    'X-Internal', 'secret',
    'Proxy-Authenticate', 'Basic',
    'Trailer', 'X-Sum',
    'Upgrade', 'h2c',
    'set-cookie', 'b=2',
    'Content-Length', '10',
  ];

  it('drops hop-by-hop and Connection-named fields, keeping repeated fields and names as sent', () => {
    assert.deepEqual(filterResponseHeaders(upstream, { keepFraming: true }), [
      'Content-Type', 'text/html',
      'Set-Cookie', 'a=1',
      'set-cookie', 'b=2',
      'Content-Length', '10',
    ]);
  });

  it('drops Content-Length unless the framing is kept', () => {
    assert.deepEqual(filterResponseHeaders(['content-length', '3', 'X', 'y'], { keepFraming: false }), ['X', 'y']);
    assert.deepEqual(filterResponseHeaders(['content-length', '3', 'X', 'y'], { keepFraming: true }), ['content-length', '3', 'X', 'y']);
  });

  it('keeps Content-Length with keepFraming even when Connection names it', () => {
    assert.deepEqual(filterResponseHeaders(['Connection', 'content-length', 'Content-Length', '3'], { keepFraming: true }), ['Content-Length', '3']);
  });

  it('does not change its input', () => {
    const copy = [...upstream];
    filterResponseHeaders(upstream, { keepFraming: false });
    assert.deepEqual(upstream, copy);
  });
});

describe('HOP_BY_HOP', () => {
  it('lists the connection-specific fields in lowercase', () => {
    for (const name of ['connection', 'proxy-connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization']) {
      assert.ok(HOP_BY_HOP.has(name), name);
    }
    assert.equal(HOP_BY_HOP.has('content-length'), false);
  });
});

describe('fieldRole', () => {
  it('knows every hop-by-hop field in any case, and no other field as one', () => {
    const hop = fieldRole('Connection');
    for (const name of HOP_BY_HOP) {
      assert.equal(fieldRole(name), hop, name);
      assert.equal(fieldRole(name.toUpperCase()), hop, name);
    }
    for (const name of ['Host', 'Content-Length', 'Expect', 'X-Forwarded-For', 'Forwarded', 'X-Real-IP', 'Accept', 'T', 'TF', 'Connectio', 'Connections', 'Http2_Settings', 'x', '']) {
      assert.notEqual(fieldRole(name), hop, name);
    }
    assert.equal(fieldRole('Accept'), fieldRole('A-Name-Longer-Than-Any-Known-Field'));
  });

  it('tells the fields the proxy treats apart by name in any case', () => {
    const roles = ['host', 'content-length', 'expect', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-real-ip'].map(fieldRole);
    assert.equal(new Set(roles).size, roles.length);
    assert.equal(roles.includes(fieldRole('accept')), false);
    assert.equal(fieldRole('X-FORWARDED-PROTO'), fieldRole('x-forwarded-proto'));
    assert.equal(fieldRole('x-forwarded-protO'), fieldRole('x-forwarded-proto'));
    assert.equal(fieldRole('x_forwarded_proto'), fieldRole('accept'));
  });
});

describe('Connection options compared in place', () => {
  it('drops the fields a response Connection names in any case, and only those', () => {
    const out = filterResponseHeaders(['Connection', 'X-Gone, x~y', 'x-gone', '1', 'X^Y', '2', 'X~Y', '3', 'Keep', '4'], { keepFraming: true });
    assert.deepEqual(out, ['X^Y', '2', 'Keep', '4']);
  });

  it('reads every Connection field, a keep-alive or close one beside the others', () => {
    assert.deepEqual(filterResponseHeaders(['Connection', 'Keep-Alive', 'Connection', 'X-A', 'X-A', '1', 'X-B', '2'], { keepFraming: true }), ['X-B', '2']);
    assert.deepEqual(filterResponseHeaders(['Connection', 'X-A', 'connection', 'CLOSE', 'X-A', '1', 'X-B', '2'], { keepFraming: true }), ['X-B', '2']);
    assert.deepEqual(lines(build({ rawHeaders: ['Host', 'h', 'Connection', 'close', 'Connection', 'x-a', 'X-A', '1', 'X-B', '2'] })).slice(2, 3), ['X-B: 2']);
  });

  it('drops them from a long list of options too', () => {
    const out = filterResponseHeaders(['Connection', 'a, b, c, d, e, X-Gone', 'X-GONE', '1', 'F', '2'], { keepFraming: true });
    assert.deepEqual(out, ['F', '2']);
  });
});

describe('sameUpstreamRequest', () => {
  const base: UpstreamRequestInput = {
    method: 'GET', url: '/a', rawHeaders: ['Host', 'example.com', 'Accept', '*/*'], clientAddress: '192.0.2.7', clientPort: 40000,
    proto: 'https', trustForwarded: false, bodyFraming: 'none', keepAlive: true,
  };

  it('is true for the same request with its fields in new strings and a new list', () => {
    const again = { ...base, rawHeaders: base.rawHeaders.map((v) => `${v}!`.slice(0, -1)) };
    assert.equal(sameUpstreamRequest(base, again), true);
    assert.equal(buildUpstreamRequestHead(again), buildUpstreamRequestHead(base));
  });

  it('is false whenever an input that shows in the head differs, and the heads then differ', () => {
    const changes: Partial<UpstreamRequestInput>[] = [
      { method: 'HEAD' }, { url: '/b' }, { clientAddress: '192.0.2.8' }, { clientPort: 40001 }, { clientPort: undefined },
      { trustForwarded: true, rawHeaders: [...base.rawHeaders, 'X-Forwarded-For', '198.51.100.1'] },
      { bodyFraming: 'length', contentLength: 3 }, { bodyFraming: 'chunked' }, { upgrade: 'websocket' }, { keepAlive: false },
      { rawHeaders: ['Host', 'example.org', 'Accept', '*/*'] }, { rawHeaders: ['Host', 'example.com', 'accept', '*/*'] },
      { rawHeaders: ['Host', 'example.com'] },
    ];
    for (const change of changes) {
      const other = { ...base, ...change };
      assert.equal(sameUpstreamRequest(base, other), false, JSON.stringify(change));
      assert.notEqual(buildUpstreamRequestHead(other), buildUpstreamRequestHead(base), JSON.stringify(change));
    }
    assert.equal(sameUpstreamRequest({ ...base, bodyFraming: 'length', contentLength: 3 }, { ...base, bodyFraming: 'length', contentLength: 4 }), false);
  });

  it('compares field values sliced from a head (as the lane gives them) byte by byte, and names apart from values', () => {
    // Values of 13 characters and more sliced from a longer string are V8 sliced strings, which
    // sameUpstreamRequest compares by indexOf: each one-byte change at each place must miss.
    const text = 'GET / HTTP/1.1\r\nHost: localhost:29001\r\nUser-Agent: h2load nghttp2/1.59.0\r\n\r\n';
    const slices = (t: string): string[] => ['Host', t.slice(22, 37), 'User-Agent', t.slice(51, 72)];
    const first = { ...base, rawHeaders: slices(text) };
    assert.equal(sameUpstreamRequest(first, { ...base, rawHeaders: slices(`${text} `) }), true);
    for (let i = 22; i < 72; i++) {
      if (i >= 37 && i < 51) continue;
      const changed = text.slice(0, i) + (text[i] === 'x' ? 'y' : 'x') + text.slice(i + 1);
      const other = { ...base, rawHeaders: slices(changed) };
      assert.equal(sameUpstreamRequest(first, other), false, `byte ${i}`);
      assert.notEqual(buildUpstreamRequestHead(other), buildUpstreamRequestHead(first), `byte ${i}`);
    }
    // A value shorter, longer, empty; a name and a value of one length exchanged.
    for (const rawHeaders of [['Host', 'localhost:2900', 'A', 'b'], ['Host', 'localhost:290011', 'A', 'b'], ['Host', '', 'A', 'b'], ['Host', 'localhost:29001', 'b', 'A']]) {
      assert.equal(sameUpstreamRequest({ ...base, rawHeaders: ['Host', 'localhost:29001', 'A', 'b'] }, { ...base, rawHeaders }), false, JSON.stringify(rawHeaders));
    }
    assert.equal(sameUpstreamRequest({ ...base, rawHeaders: ['Host', '', 'A', ''] }, { ...base, rawHeaders: ['Host', '', 'A', ''] }), true);
  });
});
