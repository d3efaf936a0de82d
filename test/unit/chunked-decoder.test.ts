import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedDecoder, type ChunkedLimits } from '../../src/http/chunked-decoder.js';
import { UpstreamResponseError } from '../../src/errors.js';

interface Decoded {
  data: string;
  /** Bytes consumed of the whole input. */
  consumed: number;
  done: boolean;
}

/** Feeds `pieces` in order, stopping when the decoder is done, as the proxy does. */
function decode(pieces: Buffer[], limits?: ChunkedLimits): Decoded {
  const decoder = new ChunkedDecoder(limits);
  const out: Buffer[] = [];
  let consumed = 0;
  for (const piece of pieces) {
    const used = decoder.push(piece, (slice) => out.push(Buffer.from(slice)));
    assert.ok(used >= 0 && used <= piece.length);
    consumed += used;
    if (decoder.done) break;
    assert.equal(used, piece.length, 'a decoder that is not done consumes everything');
  }
  return { data: Buffer.concat(out).toString('latin1'), consumed, done: decoder.done };
}

function decodeText(text: string, limits?: ChunkedLimits): Decoded {
  return decode([Buffer.from(text, 'latin1')], limits);
}

function rejects(text: string, pattern: RegExp, limits?: ChunkedLimits): void {
  const input = Buffer.from(text, 'latin1');
  // The same error whether the bytes come at once or one at a time.
  for (const pieces of [[input], splitEvery(input, 1)]) {
    assert.throws(
      () => decode(pieces, limits),
      (err: unknown) => err instanceof UpstreamResponseError && err.code === 'ERR_UPSTREAM_BAD_RESPONSE' && pattern.test(err.message),
      `${JSON.stringify(text)} in ${pieces.length} pieces`,
    );
  }
}

function splitEvery(buf: Buffer, n: number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let i = 0; i < buf.length; i += n) pieces.push(buf.subarray(i, i + n));
  return pieces;
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  let start = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    pieces.push(buf.subarray(start, cut));
    start = cut;
  }
  pieces.push(buf.subarray(start));
  return pieces;
}

/** mulberry32: a seeded generator so a failing split can be reproduced. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NEXT = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
/** Sizes in both cases, extensions with BWS and a quoted-string, trailers, then the next response. */
const BODY =
  '5\r\nhello\r\n' +
  '1;foo=bar\r\n \r\n' +
  'A ; name="q \\" ; x" ;n2\r\n0123456789\r\n' +
  '000c\r\n\r\nline two\r\n\r\n' +
  '1b\t;x\r\n' + 'a'.repeat(0x1b) + '\r\n' +
  '000;last=1\r\n' +
  'Expires: never\r\nX-Checksum:abc \r\n' +
  '\r\n';
const DATA = 'hello' + ' ' + '0123456789' + '\r\nline two\r\n' + 'a'.repeat(0x1b);

describe('ChunkedDecoder', () => {
  it('decodes a body with extensions and trailers and leaves the next response unconsumed', () => {
    const result = decodeText(BODY + NEXT);
    assert.deepEqual(result, { data: DATA, consumed: BODY.length, done: true });
  });

  it('decodes the same at every possible split into two pieces', () => {
    const input = Buffer.from(BODY + NEXT, 'latin1');
    for (let cut = 0; cut <= input.length; cut++) {
      assert.deepEqual(decode(splitAt(input, [cut])), { data: DATA, consumed: BODY.length, done: true }, `cut at ${cut}`);
    }
  });

  it('decodes the same fed one byte at a time', () => {
    assert.deepEqual(decode(splitEvery(Buffer.from(BODY + NEXT, 'latin1'), 1)), { data: DATA, consumed: BODY.length, done: true });
  });

  it('decodes the same at random splits', () => {
    const input = Buffer.from(BODY + NEXT, 'latin1');
    const next = random(0x5eed);
    for (let round = 0; round < 300; round++) {
      const cuts = Array.from({ length: 1 + Math.floor(next() * 12) }, () => Math.floor(next() * (input.length + 1)));
      assert.deepEqual(decode(splitAt(input, cuts)), { data: DATA, consumed: BODY.length, done: true }, `cuts ${cuts.join(',')}`);
    }
  });

  it('hands on chunk data as subarrays of the input, without copying', () => {
    const input = Buffer.from('3\r\nabc\r\n0\r\n\r\n');
    const slices: Buffer[] = [];
    new ChunkedDecoder().push(input, (slice) => slices.push(slice));
    assert.equal(slices.length, 1);
    assert.equal(slices[0]!.buffer, input.buffer);
    assert.equal(slices[0]!.byteOffset, input.byteOffset + 3);
    assert.equal(slices[0]!.toString(), 'abc');
  });

  it('gives a chunk split across pushes as one slice per push', () => {
    const decoder = new ChunkedDecoder();
    const slices: string[] = [];
    const onData = (slice: Buffer): void => {
      slices.push(slice.toString());
    };
    assert.equal(decoder.push(Buffer.from('a\r\n0123'), onData), 7);
    assert.equal(decoder.push(Buffer.from('456789\r\n0\r\n'), onData), 11);
    assert.equal(decoder.done, false);
    assert.equal(decoder.push(Buffer.from('\r\nnext'), onData), 2);
    assert.equal(decoder.done, true);
    assert.deepEqual(slices, ['0123', '456789']);
  });

  it('consumes nothing once done, and nothing of an empty push', () => {
    const decoder = new ChunkedDecoder();
    const onData = (): void => assert.fail('no data expected');
    assert.equal(decoder.push(Buffer.alloc(0), onData), 0);
    assert.equal(decoder.push(Buffer.from('0\r\n\r\n'), onData), 5);
    assert.equal(decoder.push(Buffer.from('1\r\nx\r\n'), onData), 0);
    assert.equal(decoder.done, true);
  });

  it('decodes an empty body', () => {
    assert.deepEqual(decodeText('0\r\n\r\n'), { data: '', consumed: 5, done: true });
    assert.deepEqual(decodeText('0000\r\n\r\n'), { data: '', consumed: 8, done: true });
  });

  it('is not done before the final CRLF', () => {
    for (const text of ['5\r\nhello\r\n', '0\r\n', '0\r\n\r', '0\r\nX: y\r\n']) {
      const result = decodeText(text);
      assert.equal(result.done, false, JSON.stringify(text));
      assert.equal(result.consumed, text.length);
    }
  });

  it('accepts sizes up to the digit limit and 2^53-1', () => {
    assert.deepEqual(decodeText('0000000000000003\r\nabc\r\n0\r\n\r\n').data, 'abc');
    assert.equal(decodeText('1fffffffffffff\r\n').done, false);
    assert.deepEqual(decodeText('003\r\nabc\r\n0\r\n\r\n', { maxChunkSizeDigits: 3 }).data, 'abc');
  });

  it('accepts extensions up to their limit for the whole body', () => {
    assert.equal(decodeText('1;aaa\r\nx\r\n0;bb\r\n\r\n', { maxExtensionSize: 7 }).done, true);
    rejects('1;aaa\r\nx\r\n0;bbb\r\n\r\n', /chunk extensions longer than 7 bytes/, { maxExtensionSize: 7 });
  });

  it('accepts trailers up to their limit', () => {
    const trailers = 'A: b\r\n\r\n';
    assert.equal(decodeText(`0\r\n${trailers}`, { maxTrailerSize: trailers.length }).done, true);
    rejects(`0\r\n${trailers}`, /trailers larger than 7 bytes/, { maxTrailerSize: trailers.length - 1 });
  });
});

describe('ChunkedDecoder: rejections', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['a 0x prefix', '0x10\r\n', /"x" in a chunk size/],
    ['a negative size', '-1\r\n', /starts with "-"/],
    ['an empty size', '\r\nabc\r\n', /starts with byte 0x0d/],
    ['leading whitespace', ' 5\r\nhello\r\n', /starts with byte 0x20/],
    ['17 digits', '00000000000000001\r\nx\r\n', /longer than 16 hex digits/],
    ['a size over 2^53-1', '20000000000000\r\n', /exceeds 2\^53-1/],
    ['a non-hex digit', '5g\r\n', /"g" in a chunk size/],
    ['whitespace without an extension', '5 \r\nhello\r\n0\r\n\r\n', /not followed by an extension/],
    ['whitespace then junk', '5 x\r\nhello\r\n', /not followed by an extension/],
    ['a bare LF after the size', '5\nhello\r\n', /byte 0x0a in a chunk size/],
    ['a bare CR after the size', '5\rhello\r\n', /size line not ended by CRLF/],
    ['a bare LF in an extension', '5;a=b\nhello\r\n', /byte 0x0a in a chunk extension/],
    ['NUL in an extension', '5;a\0\r\nhello\r\n', /byte 0x00 in a chunk extension/],
    ['data longer than its size', '5\r\nhello!\r\n0\r\n\r\n', /chunk data not followed by CRLF/],
    ['data followed by a bare LF', '5\r\nhello\n0\r\n\r\n', /chunk data not followed by CRLF/],
    ['data followed by CR and junk', '5\r\nhello\rx0\r\n\r\n', /chunk data not followed by CRLF/],
    ['a trailer with a bare LF', '0\r\nX: y\n\r\n', /byte 0x0a in a trailer field value/],
    ['a trailer CR without LF', '0\r\nX: y\rz\r\n\r\n', /trailer line not ended by CRLF/],
    ['a folded trailer', '0\r\nX: y\r\n z\r\n\r\n', /trailer line starts with byte 0x20/],
    ['whitespace before a trailer colon', '0\r\nX : y\r\n\r\n', /byte 0x20 in a trailer field name/],
    ['a trailer without a colon', '0\r\nX\r\n\r\n', /byte 0x0d in a trailer field name/],
    ['a control byte in a trailer value', '0\r\nX: \x01\r\n\r\n', /byte 0x01 in a trailer field value/],
    ['a final CR without LF', '0\r\n\rX', /not ended by CRLF/],
    ['a final bare LF', '0\r\n\n', /trailer line starts with byte 0x0a/],
  ];
  for (const [title, text, pattern] of cases) {
    it(title, () => rejects(text, pattern));
  }

  it('honours a smaller maxChunkSizeDigits', () => {
    rejects('0005\r\nhello\r\n', /longer than 3 hex digits/, { maxChunkSizeDigits: 3 });
  });

  it('says what to do in its messages', () => {
    assert.throws(() => decodeText('z\r\n'), /chunked body: .*; fix the upstream application/);
  });
});

describe('ChunkedDecoder framing-only mode (the proxy splices the data)', () => {
  /**
   * Plays the splicing caller: framing bytes go through pushFraming() from
   * whatever a peek would show (`window` bytes at a time), data bytes are
   * "moved" in pieces of at most `move` and collected from the input directly.
   */
  function viaFraming(input: Buffer, window: number, move: number): { data: Buffer; used: number } {
    const dec = new ChunkedDecoder();
    const data: Buffer[] = [];
    let pos = 0;
    while (!dec.done) {
      const pending = dec.dataPending;
      if (pending > 0) {
        const n = Math.min(pending, move, input.length - pos);
        assert.ok(n > 0, 'input ended inside chunk data');
        data.push(input.subarray(pos, pos + n));
        dec.dataMoved(n);
        pos += n;
        continue;
      }
      const used = dec.pushFraming(input.subarray(pos, Math.min(input.length, pos + window)));
      assert.ok(used > 0 || dec.done, 'framing made progress');
      pos += used;
    }
    return { data: Buffer.concat(data), used: pos };
  }

  it('yields the same data and stops at the same byte as push(), for any peek window and move size', () => {
    const input = Buffer.from(BODY + NEXT, 'latin1');
    const whole = decode([input]);
    for (const window of [1, 2, 3, 7, 64, 4096]) {
      for (const move of [1, 5, 1000]) {
        const r = viaFraming(input, window, move);
        assert.equal(r.data.toString('latin1'), whole.data, `window ${window}, move ${move}`);
        assert.equal(r.used, whole.consumed, 'the next response is left unread');
      }
    }
  });

  it('pushFraming never consumes chunk data, and dataMoved refuses more than is pending', () => {
    const dec = new ChunkedDecoder();
    assert.equal(dec.pushFraming(Buffer.from('5\r\nhello\r\n0\r\n\r\n')), 3);
    assert.equal(dec.dataPending, 5);
    assert.throws(() => dec.dataMoved(6), RangeError);
    dec.dataMoved(5);
    assert.equal(dec.dataPending, 0);
    assert.equal(dec.pushFraming(Buffer.from('\r\n0\r\n\r\n')), 7);
    assert.ok(dec.done);
  });

  it('still rejects bad framing', () => {
    const dec = new ChunkedDecoder();
    dec.pushFraming(Buffer.from('2\r\n'));
    dec.dataMoved(2);
    assert.throws(() => dec.pushFraming(Buffer.from('XX')), UpstreamResponseError);
  });
});
