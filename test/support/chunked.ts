/** Strict decoding of an HTTP/1.1 chunked body (RFC 9112 §7.1), to check what a server really framed. */

/**
 * The data and the size of each chunk, in order (the final zero-size chunk
 * not included). Throws on anything malformed: a bad size line, a chunk not
 * followed by CRLF, a missing last chunk, trailer fields or bytes after the end.
 */
export function decodeChunked(body: Buffer): { data: Buffer; sizes: number[] } {
  const parts: Buffer[] = [];
  const sizes: number[] = [];
  let pos = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', pos);
    if (eol < 0) throw new Error(`chunked: no size line at offset ${pos}`);
    const line = body.subarray(pos, eol).toString('latin1');
    // Chunk extensions (";name=value") are legal but no server here sends them.
    if (!/^[0-9a-fA-F]{1,8}$/.test(line)) throw new Error(`chunked: bad size line ${JSON.stringify(line)} at offset ${pos}`);
    const size = parseInt(line, 16);
    pos = eol + 2;
    if (size === 0) {
      if (body.length !== pos + 2 || body[pos] !== 0x0d || body[pos + 1] !== 0x0a) throw new Error(`chunked: expected CRLF and nothing else after the last chunk, got ${body.length - pos} bytes`);
      return { data: Buffer.concat(parts), sizes };
    }
    if (pos + size + 2 > body.length) throw new Error(`chunked: chunk of ${size} at offset ${pos} runs past the end (${body.length})`);
    if (body[pos + size] !== 0x0d || body[pos + size + 1] !== 0x0a) throw new Error(`chunked: no CRLF after the chunk at offset ${pos}`);
    parts.push(body.subarray(pos, pos + size));
    sizes.push(size);
    pos += size + 2;
  }
}
