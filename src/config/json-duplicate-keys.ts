/**
 * Keys given twice in one object of a JSON text (already known valid:
 * JSON.parse accepted it), which JSON.parse silently resolves to the last.
 * nginx refuses a directive given twice ("directive is duplicate") and the
 * YAML reader refuses duplicate keys (uniqueKeys), so a JSON config does too.
 * A scan rather than the yaml package, which is loaded for YAML files only.
 */
export function jsonDuplicateKeys(text: string): string[] {
  const dups: string[] = [];
  const stack: Array<Set<string> | null> = []; // null: an array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key) && !dups.includes(key)) dups.push(key);
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      stack.push(null);
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  return dups;
}
