/** Case and request bytes as one printable line (JSON-style escapes), so a failure report can be pasted and replayed. */
export function escapeBytes(b: Buffer, max = 4096): string {
  let out = '';
  const n = Math.min(b.length, max);
  for (let i = 0; i < n; i++) {
    const c = b[i]!;
    if (c === 0x0d) out += '\\r';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x5c) out += '\\\\';
    else if (c >= 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else out += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  if (b.length > max) out += `...(${b.length - max} more bytes)`;
  return out;
}
