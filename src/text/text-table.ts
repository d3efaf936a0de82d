/** Plain-text tables for the admin-facing reports (doctor, scan): columns padded to their widest cell, the last left ragged. */

/**
 * C0 and C1 controls, DEL, and the Unicode format characters that reorder or
 * hide text (bidi embeddings, overrides and isolates, marks, line and
 * paragraph separators: the "Trojan Source" set, CVE-2021-42574).
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

/**
 * A cell as a terminal may show it: every character above written as `\xNN`
 * or `\u{NNNN}`. Cells hold what other processes chose (a process's comm, its
 * executable's and libraries' paths), and `aludel scan` runs as root: written
 * raw, an unprivileged user's process named "\x1b]0;...\x07\x1b[2J" set the
 * title of root's terminal and cleared it. ps(1) shows such bytes as '?'.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const n = c.codePointAt(0)!;
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
}

export function textTable(rows: string[][], indent = '  '): string {
  const cells = rows.map((row) => row.map(printable));
  const widths: number[] = [];
  for (const row of cells) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return cells.map((row) => indent + row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
