/**
 * Installing Aludel as an admin would (README "Install", docs/deploy.md):
 * `npm pack` in a copy of the package's sources (so `prepack` really compiles
 * the TypeScript, away from this checkout's dist/), then `npm install -g
 * --prefix DIR --offline` of the tarball into a fresh prefix, with no registry
 * reachable, which builds the addon and the preload library with npm's own
 * node-gyp (no devDependencies there). Then, from a directory outside the
 * repository, the installed `DIR/bin/aludel`: --version, cert, serve with a real
 * curl request, and `run`, whose preload library must resolve from the
 * installed package. Last, deploy/aludel-proxy.service pointed at that binary
 * must pass `systemd-analyze verify` with nothing to say about it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { curl } from '../support/clients.js';
import { reapOnExit, run, type RunResult } from '../support/run-process.js';
import { waitUntil } from '../support/wait.js';

/** dist/test/integration/install.test.js -> the repository. */
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const PKG = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { name: string; version: string };
/** What the package is built from: its `files`, plus what `prepack` (tsc) and `npm pack` (bundled dependencies) read. */
const SOURCES = ['package.json', 'tsconfig.json', 'binding.gyp', 'README.md', 'src', 'native', 'scripts', 'schema', 'deploy', 'docs', 'node_modules'];

/**
 * The environment of a shell where an admin types the commands: none of the
 * npm_* variables that `npm test` hands its children (a prefix or a package
 * there would change what npm does), and a registry that refuses every
 * connection, so anything that would need the network fails at once.
 */
function adminEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of Object.keys(process.env)) if (/^npm_/i.test(k)) env[k] = undefined;
  env.npm_config_registry = 'http://127.0.0.1:9/';
  env.npm_config_update_notifier = 'false';
  env.npm_config_audit = 'false';
  env.npm_config_fund = 'false';
  return env;
}

function runIn(cwd: string, cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  // run() has no cwd option: `env -C DIR` (coreutils) changes into it, then execs cmd.
  return run('env', ['-C', cwd, cmd, ...args], { env: adminEnv(), timeoutMs, killSignal: 'SIGKILL' });
}

function explain(r: RunResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}\nstdout:\n${r.stdout.toString('utf8').slice(-4000)}\nstderr:\n${r.stderr.slice(-4000)}`;
}

describe('install from the repository: npm pack, then npm install -g --offline into a fresh prefix', { timeout: 420_000 }, () => {
  let tmp: string;
  let prefix: string;
  let bin: string;
  let installed: string;
  let work: string;
  let server: ChildProcess | undefined;

  before(async () => {
    tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-install-'));
    const src = path.join(tmp, 'src');
    prefix = path.join(tmp, 'prefix');
    work = path.join(tmp, 'work');
    await fs.promises.mkdir(src);
    await fs.promises.mkdir(work);
    for (const name of SOURCES) {
      const r = await run('cp', ['-a', path.join(REPO, name), src], { timeoutMs: 120_000 });
      assert.equal(r.code, 0, `cp ${name}: ${explain(r)}`);
    }

    const pack = await runIn(src, 'npm', ['pack', '--pack-destination', tmp], 240_000);
    assert.equal(pack.code, 0, `npm pack: ${explain(pack)}`);
    const tarball = path.join(tmp, `${PKG.name}-${PKG.version}.tgz`);
    assert.ok(fs.existsSync(tarball), `npm pack made ${tarball}: ${explain(pack)}`);

    // From a directory outside the repository, as an admin would.
    const install = await runIn(work, 'npm', ['install', '-g', '--prefix', prefix, '--offline', tarball], 240_000);
    assert.equal(install.code, 0, `npm install -g --offline: ${explain(install)}`);
    bin = path.join(prefix, 'bin', 'aludel');
    installed = path.join(prefix, 'lib', 'node_modules', PKG.name);
  });

  after(async () => {
    if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    if (tmp) await fs.promises.rm(tmp, { recursive: true, force: true });
  });

  test('the package holds the compiled CLI and the built native files, not the tests or the TypeScript', () => {
    assert.ok(fs.existsSync(bin), `${bin} exists`);
    // The bundle (scripts/bundle.mjs): one file for node to load at each start.
    assert.equal(fs.realpathSync(bin), path.join(installed, 'dist', 'src', 'cli', 'aludel.js'));
    for (const f of ['build/Release/aludel.node', 'build/Release/aludel-preload.so', 'deploy/aludel-proxy.service', 'node_modules/commander/package.json']) {
      assert.ok(fs.existsSync(path.join(installed, f)), `${f} in the installed package`);
    }
    for (const f of ['dist/test', 'test', 'src', 'bench']) assert.ok(!fs.existsSync(path.join(installed, f)), `no ${f} in the installed package`);
  });

  test('aludel --version prints the package version', async () => {
    const r = await runIn(work, bin, ['--version'], 30_000);
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.stdout.toString('utf8').trim(), PKG.version);
  });

  test('aludel cert, then aludel serve answers a real curl request', async () => {
    const tls = path.join(work, 'tls');
    const cert = await runIn(work, bin, ['cert', '--out', 'tls'], 30_000);
    assert.equal(cert.code, 0, explain(cert));
    const root = path.join(work, 'www');
    await fs.promises.mkdir(root);
    await fs.promises.writeFile(path.join(root, 'index.html'), 'installed aludel\n');

    const child = reapOnExit(
      spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--cert', 'tls/cert.pem', '--key', 'tls/key.pem', '--root', 'www'], {
        cwd: work,
        env: { ...process.env, ...adminEnv() },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    server = child;
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const lines = (): Array<Record<string, unknown>> =>
      out.split('\n').flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
    const serving = (): Record<string, unknown> | undefined => lines().find((l) => l.msg === 'serving files over HTTPS');
    await waitUntil(() => serving() !== undefined || child.exitCode !== null, 15_000).catch(() => undefined);
    const line = serving();
    assert.ok(line, `"serving files over HTTPS" within 15 s; output:\n${out}`);
    const listen = String(line.listen);
    const port = Number(listen.slice(listen.lastIndexOf(':') + 1));

    // The addon loaded from the installed build/Release: the TLS engine is the system OpenSSL, not node:tls.
    const crypto = lines().find((l) => typeof l.msg === 'string' && l.msg.startsWith('crypto:'));
    assert.equal(crypto?.engine, 'system-openssl', `start-up crypto line: ${JSON.stringify(crypto)}\n${out}`);

    const r = await curl(['--cacert', path.join(tls, 'cert.pem'), '--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/index.html`]);
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.stdout.toString('utf8'), 'installed aludel\n');

    child.kill('SIGTERM');
    await waitUntil(() => child.exitCode !== null || child.signalCode !== null, 10_000);
    assert.equal(child.exitCode, 0, `serve exits 0 on SIGTERM; output:\n${out}`);
  });

  test('aludel run finds its preload library in the installed package', async () => {
    const r = await runIn(work, bin, ['run', '--', 'cat', '/proc/self/maps'], 30_000);
    assert.equal(r.code, 0, explain(r));
    const preload = path.join(installed, 'build', 'Release', 'aludel-preload.so');
    assert.ok(r.stdout.toString('utf8').includes(preload), `cat's memory map has ${preload}: ${explain(r)}`);
  });

  test('deploy/aludel-proxy.service, ExecStart pointed at the installed binary, passes systemd-analyze verify', async () => {
    const unit = await fs.promises.readFile(path.join(REPO, 'deploy', 'aludel-proxy.service'), 'utf8');
    const exec = /^ExecStart=(\S+) proxy --config \/etc\/aludel\/proxy\.yaml$/m.exec(unit);
    assert.ok(exec, 'ExecStart=... proxy --config /etc/aludel/proxy.yaml');
    assert.equal(exec[1], '/usr/local/bin/aludel', 'the unit expects `npm install -g --prefix /usr/local` (docs/deploy.md)');
    const dir = path.join(tmp, 'unit');
    await fs.promises.mkdir(dir);
    const copy = path.join(dir, 'aludel-proxy.service');
    await fs.promises.writeFile(copy, unit.replace(/^ExecStart=\S+/m, `ExecStart=${bin}`));

    const which = await run('sh', ['-c', 'command -v systemd-analyze'], { timeoutMs: 10_000 });
    assert.equal(which.code, 0, 'systemd-analyze is installed (Debian: apt-get install systemd; .ci/run installs it)');
    const r = await run('systemd-analyze', ['verify', copy], { timeoutMs: 60_000 });
    const said = `${r.stdout.toString('utf8')}${r.stderr}`;
    const aboutUnit = said.split('\n').filter((l) => l.includes('aludel-proxy') || l.includes(dir));
    assert.equal(r.code, 0, `systemd-analyze verify: ${explain(r)}`);
    assert.deepEqual(aboutUnit, [], `systemd-analyze verify has something to say about the unit:\n${said}`);

    // The unpatched unit names /usr/local/bin/aludel; where that is missing verify must say so (the check above can fail).
    if (!fs.existsSync('/usr/local/bin/aludel')) {
      const unpatched = await run('systemd-analyze', ['verify', path.join(REPO, 'deploy', 'aludel-proxy.service')], { timeoutMs: 60_000 });
      assert.notEqual(unpatched.code, 0, 'verify fails on a missing ExecStart binary');
      assert.match(unpatched.stderr, /\/usr\/local\/bin\/aludel/);
    }
  });
});
