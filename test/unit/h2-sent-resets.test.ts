/**
 * SentFrames (h2-sent-resets.ts) finds each RST_STREAM in nghttp2's output
 * however the frames are cut across writes (a header split mid-way, a frame
 * per byte, several frames in one write), and skips every other frame by its
 * length (RFC 9113 §4.1), a DATA payload that looks like a frame header included.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SentFrames } from '../../src/http/h2-sent-resets.js';

function frame(type: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

const rst = (stream: number, code: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(code); return frame(0x3, stream, b); };
// A DATA payload holding what would read as a RST_STREAM of stream 99 if the walk lost its place.
const wire = Buffer.concat([frame(0x4, 0, Buffer.alloc(12)), frame(0x0, 1, rst(99, 1)), rst(1, 1), frame(0x1, 3, Buffer.alloc(30)), frame(0x4, 0, Buffer.alloc(0)), rst(5, 8), frame(0x0, 3, Buffer.alloc(20000))]);

for (const [name, cut] of [['one write', wire.length], ['a byte per write', 1], ['7-byte writes', 7], ['4096-byte writes', 4096]] as const) {
  test(`RST_STREAM frames found, ${name}`, () => {
    const seen: Array<[number, number]> = [];
    const f = new SentFrames((s, c) => seen.push([s, c]));
    for (let at = 0; at < wire.length; at += cut) f.push(wire.subarray(at, at + cut));
    assert.deepEqual(seen, [[1, 1], [5, 8]]);
  });
}
