/**
 * acme-client (~27 MiB RSS, 0.4 s) and yaml (~8 MiB, 60 ms) are loaded by the
 * processes that use them, not by every worker at start (acme-order.ts,
 * proxy-config-file.ts). Both are CommonJS, so once loaded they sit in
 * node:module's cache, even when reached through an ESM import.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

function loadedAfter(script: string): string[] {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `
import { createRequire } from 'node:module';
const dist = ${JSON.stringify(dist)};
${script}
const cache = createRequire(import.meta.url).cache;
const names = new Set(Object.keys(cache).map((f) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(f)?.[1]).filter(Boolean));
console.log(JSON.stringify([...names]));
`], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!) as string[];
}

test('the commands load neither acme-client nor yaml at start', () => {
  const names = loadedAfter(`
await import(dist + '/cli/serve-command.js');
await import(dist + '/cli/proxy-command.js');
await import(dist + '/cli/primary.js');
`);
  // The detection itself works: prom-client (CommonJS) is loaded by every command.
  assert.ok(names.includes('prom-client'), `prom-client not seen in ${names.join(', ')}`);
  assert.ok(!names.includes('acme-client'), 'acme-client loaded at start');
  assert.ok(!names.includes('yaml'), 'yaml loaded at start');
});

test('ordering loads acme-client, and a YAML config loads yaml', () => {
  const names = loadedAfter(`
const order = await import(dist + '/tls/acme/acme-order.js');
await order.loadAcmeClient();
const fs = await import('node:fs');
const os = await import('node:os');
const path = await import('node:path');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-lazy-'));
const file = path.join(dir, 'c.yaml');
fs.writeFileSync(file, 'listen: "[a"\\n');
const cfg = await import(dist + '/config/proxy-config-file.js');
await cfg.loadProxyConfigFile(file, 'serve').catch(() => {});
fs.rmSync(dir, { recursive: true, force: true });
`);
  assert.ok(names.includes('acme-client'), `acme-client not loaded: ${names.join(', ')}`);
  assert.ok(names.includes('yaml'), `yaml not loaded: ${names.join(', ')}`);
});
