#!/usr/bin/env node
// Bundles the CLI (src/cli/main.ts and everything it imports) into
// dist/src/cli/aludel.js, the file `aludel` runs (package.json "bin").
//
// Why: node's ESM loader resolves, opens, stats and compiles each module on
// its own. The CLI is ~340 modules (ours, zod, prom-client, pino,
// @opentelemetry/api...), so `aludel --version` cost ~0.45 s of CPU against
// node's own ~0.08 s, and every start paid it: `aludel run` in front of a
// program, each worker process, doctor and scan. One file is resolved, opened
// and compiled once: ~0.27 s. Under the kTLS VM's emulated CPU a start went
// from ~40 s of CPU to ~10 s.
//
// The bundle sits in dist/src/cli/, at the same depth as every module tsc
// emits (dist/src/<folder>/), so the paths the code builds from its own
// import.meta.url (the addon and the preload in build/Release/, package.json)
// resolve alike from the bundle and from dist/src/. tsc's dist/src/ stays
// (the tests import its modules; `node dist/src/cli/main.js` still works).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(root, 'dist/src/cli');

fs.mkdirSync(outdir, { recursive: true });

await build({
  absWorkingDir: root,
  entryPoints: ['src/cli/main.ts'],
  outfile: path.join(outdir, 'aludel.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // One file, no chunks: what is imported with import() (acme-client,
  // @peculiar/x509) stays in it, run only when imported. A chunk would start no
  // faster (measured), and a CommonJS package in a chunk of its own is
  // imported as { default } alone: `(await import('@peculiar/x509')).cryptoProvider`
  // was undefined.
  // No keepNames: it wraps every function made at run time in a defineProperty
  // call (__name), closures made per request included. Class names are checked
  // below instead.
  // CommonJS packages inside an ESM bundle call require() for node's builtins
  // (pino, prom-client, commander); ESM has no require, so give them node's.
  banner: { js: "import { createRequire as __aludelRequire } from 'node:module'; const require = __aludelRequire(import.meta.url);" },
  // Stack traces name the bundle's lines; the map (NODE_OPTIONS=--enable-source-maps) names src/'s.
  sourcemap: 'linked',
  logLevel: 'warning',
});

// The bundle is one scope, so esbuild renames a top-level name that two modules
// share (`class X` in both: X and X2), and a class's name is what it is called
// by: errors.ts names each error by new.target.name, and logs carry it. So no
// class of src/ may be renamed; if one is, rename it in src/.
const classes = new Set();
const walk = (dir) => {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (p.endsWith('.ts')) for (const m of fs.readFileSync(p, 'utf8').matchAll(/^(?:export )?(?:abstract )?class ([A-Za-z_$][\w$]*)/gm)) classes.add(m[1]);
  }
};
walk(path.join(root, 'src'));
const renamed = [];
for (const m of fs.readFileSync(path.join(outdir, 'aludel.js'), 'utf8').matchAll(/\b(?:var|let|const) ([A-Za-z_$][\w$]*?)(\d+) = class\b|\bclass ([A-Za-z_$][\w$]*?)(\d+)\b/g)) {
  const name = m[1] ?? m[3];
  if (classes.has(name)) renamed.push(`${name} -> ${name}${m[2] ?? m[4]}`);
}
if (renamed.length > 0) {
  console.error(`bundle: classes of src/ renamed in the bundle, so their .name changed: ${renamed.join(', ')}; give them names no dependency uses`);
  process.exit(1);
}
