/**
 * The README's test command must work on a fresh Debian as .ci/run does: the
 * packages it installs are the ones .ci/run installs. (Before, the README's
 * list lacked pebble, and the ACME suites skipped on a machine set up from it.)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** The package names of the first `apt-get install` in `text` (options and line continuations left out). */
function aptPackages(text: string): string[] {
  const m = /apt-get install((?:\\\n|[^\n&])*)/.exec(text);
  assert.ok(m, 'an apt-get install line');
  return m[1]!.replace(/\\\n/g, ' ').split(/\s+/).filter((w) => w !== '' && !w.startsWith('-') && !w.startsWith('>')).sort();
}

describe('set-up', () => {
  it("the README's test command installs the packages .ci/run installs", () => {
    const readme = fs.readFileSync(`${root}README.md`, 'utf8');
    const ci = fs.readFileSync(`${root}.ci/run`, 'utf8');
    const ciPackages = aptPackages(ci);
    assert.ok(ciPackages.includes('pebble') && ciPackages.includes('qemu-system-x86'), ciPackages.join(' '));
    assert.deepEqual(aptPackages(readme.slice(readme.indexOf('runs every test') - 600)), ciPackages);
  });
});
