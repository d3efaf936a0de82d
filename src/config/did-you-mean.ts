/** "unknown setting 'conect-timeout' (did you mean 'connect-timeout'?)": the closest known name, if close enough. */

/** connectTimeout / connect_timeout -> connect-timeout: people write keys in their usual config style. */
function kebab(word: string): string {
  return word.replace(/_/g, '-').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Levenshtein distance, one row at a time (names are short; this runs only on an error). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = row;
  }
  return prev[b.length]!;
}

export function didYouMean(word: string, candidates: readonly string[]): string | null {
  const w = kebab(word);
  let best: string | null = null;
  // About one edit in four characters: 'conect-timeout' finds 'connect-timeout', 'foo' finds nothing.
  let bestDistance = Math.max(1, Math.floor(w.length / 4)) + 1;
  for (const c of candidates) {
    const d = distance(w, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}
