/**
 * PEM blocks (RFC 7468) found in a file's text, in one pass.
 *
 * Not a regular expression: /-----BEGIN X-----[\s\S]*?-----END X-----/g
 * retries its lazy scan from every BEGIN line to the end of the text when no
 * END line follows, so a file of BEGIN lines alone cost time quadratic in
 * its size (1 MB: seconds, 8 MB: minutes), on the event loop, during a SIGHUP
 * reload that every open connection waits behind. Here the END line nearest
 * each BEGIN is looked up once per label and reused for the BEGIN lines
 * before it, so each byte is looked at a bounded number of times.
 */

/**
 * The blocks whose BEGIN line names one of `labels` ("CERTIFICATE",
 * "TRUSTED CERTIFICATE"), each from its BEGIN line to the first END line of
 * one of `labels` after it (what OpenSSL's PEM reader takes), in file order.
 * Text outside blocks (comments, "Bag Attributes", other labels) is skipped.
 */
export function pemBlocks(text: string, labels: readonly string[]): string[] {
  const begins = labels.map((l) => `-----BEGIN ${l}-----`);
  const ends = labels.map((l) => `-----END ${l}-----`);
  // Per END marker: the position of its first occurrence at or after `from`, cached (-1: none left).
  const endAt = ends.map(() => -2);
  const nextEnd = (from: number): { at: number; len: number } | null => {
    let best: { at: number; len: number } | null = null;
    for (const [i, marker] of ends.entries()) {
      if (endAt[i]! !== -1 && endAt[i]! < from) endAt[i] = text.indexOf(marker, from);
      const at = endAt[i]!;
      if (at !== -1 && (best === null || at < best.at)) best = { at, len: marker.length };
    }
    return best;
  };
  const blocks: string[] = [];
  for (let p = text.indexOf('-----BEGIN '); p !== -1; p = text.indexOf('-----BEGIN ', p + 1)) {
    const begin = begins.find((b) => text.startsWith(b, p));
    if (begin === undefined) continue;
    const end = nextEnd(p + begin.length);
    if (end === null) break; // no END line after this one: none after any later BEGIN either
    blocks.push(text.slice(p, end.at + end.len));
    p = end.at + end.len - 1;
  }
  return blocks;
}
