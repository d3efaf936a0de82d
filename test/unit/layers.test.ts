/**
 * The layers of src/ as the README's "How it works" lays them out: a folder
 * imports only folders below it. Imports that ran back up (the doctor into
 * tls/, the settings into tls/ and http/, the metrics into proxy/) grew one
 * at a time, each unremarkable alone; this test names the next one when it
 * is written. Read from the sources' own import lines, types included.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Each part of src/ and its layer: a part may import parts of a lower layer only. */
const LAYER: Record<string, number> = {
  'errors.ts': 0, text: 0, native: 0, demo: 0,
  log: 1, offload: 1, scan: 1,
  transport: 2, config: 2, run: 2,
  tls: 3,
  metrics: 4,
  http: 5,
  cache: 6,
  proxy: 7,
  cli: 8,
};

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/test/unit -> the checkout's src/ (the .ts sources, not the emitted .js).
const src = path.resolve(here, '..', '..', '..', 'src');

function sourcesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourcesUnder(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** The part of src/ a file lies in: its first folder, or the file itself at the top. */
function partOf(file: string): string {
  return path.relative(src, file).split(path.sep)[0]!;
}

/** Relative module specifiers of `text`: import/export ... from '...', import '...', import('...'). */
function relativeImports(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(?\s*)'(\.{1,2}\/[^']+)'/g)) out.push(m[1]!);
  return out;
}

describe('the layers of src/', () => {
  const files = sourcesUnder(src);

  it('finds the sources (a moved src/ would make every check below pass on nothing)', () => {
    assert.ok(files.length > 100, `only ${files.length} .ts files under ${src}`);
  });

  it('every part of src/ has a layer', () => {
    const parts = new Set(files.map(partOf));
    const missing = [...parts].filter((p) => LAYER[p] === undefined);
    assert.deepEqual(missing, [], 'a new part of src/: give it a layer here and a line in the README (How it works)');
  });

  it('no import runs from a lower layer to a higher one, or across one layer', () => {
    const wrong: string[] = [];
    for (const file of files) {
      const from = partOf(file);
      for (const spec of relativeImports(fs.readFileSync(file, 'utf8'))) {
        const target = path.resolve(path.dirname(file), spec);
        const rel = path.relative(src, target);
        if (rel.startsWith('..')) {
          wrong.push(`${path.relative(src, file)} imports ${spec}, outside src/`);
          continue;
        }
        const to = partOf(target.replace(/\.js$/, '.ts'));
        if (to === from) continue;
        if (!(LAYER[to]! < LAYER[from]!)) wrong.push(`${path.relative(src, file)} (${from}, layer ${LAYER[from]}) imports ${spec} (${to}, layer ${LAYER[to]})`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  it('sees a wrong import when there is one (the check itself)', () => {
    assert.deepEqual(relativeImports("import type { X } from '../proxy/upstream-group.js';\nexport { y } from './y.js';\nconst z = await import('../cli/main.js');"), ['../proxy/upstream-group.js', './y.js', '../cli/main.js']);
    assert.ok(!(LAYER.proxy! < LAYER.metrics!), 'metrics -> proxy would be refused');
  });
});
