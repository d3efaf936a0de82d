/**
 * pemBlocks: the PEM blocks of a certificate, key or CA file, as the regular
 * expression it replaced found them, in one pass over the text (a file of
 * BEGIN lines without END cost the expression time quadratic in its size).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pemBlocks } from '../../src/text/pem.js';

const block = (label: string, body: string): string => `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----`;

test('blocks in file order, text between and around them skipped', () => {
  const a = block('CERTIFICATE', 'QUFB');
  const b = block('CERTIFICATE', 'QkJC');
  const text = `Bag Attributes\n${a}\nsubject=CN=x\n${block('PRIVATE KEY', 'S0VZ')}\n${b}\ntrailer`;
  assert.deepEqual(pemBlocks(text, ['CERTIFICATE']), [a, b]);
  assert.deepEqual(pemBlocks(text, ['PRIVATE KEY']), [block('PRIVATE KEY', 'S0VZ')]);
});

test('several labels: each block in order, whichever label', () => {
  const t = block('TRUSTED CERTIFICATE', 'VFRU');
  const c = block('CERTIFICATE', 'Q0VS');
  assert.deepEqual(pemBlocks(`${t}\n${c}\n`, ['CERTIFICATE', 'TRUSTED CERTIFICATE']), [t, c]);
});

test('a BEGIN without END yields nothing from there on; an END before any BEGIN is ignored', () => {
  const c = block('CERTIFICATE', 'Q0VS');
  assert.deepEqual(pemBlocks(`-----END CERTIFICATE-----\n${c}\n-----BEGIN CERTIFICATE-----\nQUFB\n`, ['CERTIFICATE']), [c]);
  assert.deepEqual(pemBlocks('-----BEGIN CERTIFICATE-----\n'.repeat(3), ['CERTIFICATE']), []);
  assert.deepEqual(pemBlocks('', ['CERTIFICATE']), []);
});

test('a BEGIN inside an unterminated block: the block runs to the first END after the outer BEGIN (as the old expression)', () => {
  const text = '-----BEGIN CERTIFICATE-----\nQUFB\n-----BEGIN CERTIFICATE-----\nQkJC\n-----END CERTIFICATE-----';
  assert.deepEqual(pemBlocks(text, ['CERTIFICATE']), [text]);
});

test('a megabyte of BEGIN lines without END: no block (the old expression took seconds here)', () => {
  const text = '-----BEGIN CERTIFICATE-----\n'.repeat(37_000);
  assert.deepEqual(pemBlocks(text, ['CERTIFICATE']), []);
});
