/** The admin-facing tables write control and bidi characters out, so a cell cannot drive the terminal. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { printable, textTable } from '../../src/text/text-table.js';

test('printable: C0, DEL, C1 and bidi controls are written as escapes; other text is untouched', () => {
  assert.equal(printable('nginx: worker'), 'nginx: worker');
  assert.equal(printable('caf\u00e9 \u65e5\u672c'), 'caf\u00e9 \u65e5\u672c');
  assert.equal(printable('\x1b[2J\x07\x00\t\n\x7f'), '\\x1b[2J\\x07\\x00\\x09\\x0a\\x7f');
  assert.equal(printable('\u009b31m'), '\\x9b31m');
  assert.equal(printable('a\u202eb\u2066c\u200fd\u2028'), 'a\\u{202e}b\\u{2066}c\\u{200f}d\\u{2028}');
});

test('textTable pads by the cells as written out', () => {
  assert.equal(textTable([['a\x1b', 'x'], ['bbbbbb', 'y']], ''), 'a\\x1b   x\nbbbbbb  y');
});
