/** HTTP/2 frames written by hand, for tests that send what a well-behaved client never would. */

/** An HTTP/2 frame (RFC 9113 §4.1): its 9-octet header, then `payload`. */
export function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}
