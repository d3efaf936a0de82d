/**
 * The admin listener from a test: its address from the start-up log line,
 * /metrics parsed into samples, sums over label subsets, and Prometheus's own
 * `promtool check metrics` (Debian package prometheus) on the scraped text.
 */
import assert from 'node:assert/strict';
import type { AdminStatus } from '../../src/metrics/admin-server.js';
import type { Running } from './aludel-process.js';
import { run } from './run-process.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Scrape {
  text: string;
  contentType: string | null;
  samples: Sample[];
}

/** "127.0.0.1:41234" from the `admin listening` line (--admin ...:0 binds a free port). */
export async function adminAddress(server: Running): Promise<string> {
  const line = await server.waitForLog((l) => l.msg === 'admin listening');
  return String(line.admin);
}

/** One `name{a="x",b="y"} value` line per sample; # lines skipped. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not an exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

export async function scrape(admin: string): Promise<Scrape> {
  const res = await fetch(`http://${admin}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  return { text, contentType: res.headers.get('content-type'), samples: parseExposition(text) };
}

/** The samples of `name` whose labels include `match`. */
export function select(samples: Sample[], name: string, match: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** Sum of select(); 0 when there is no such series. */
export function total(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return select(samples, name, match).reduce((a, s) => a + s.value, 0);
}

/** `promtool check metrics` reads the exposition on stdin; exit 0 means it parsed and passed the lint rules. */
export async function assertPromtoolPasses(text: string): Promise<void> {
  const r = await run('promtool', ['check', 'metrics'], { input: text, timeoutMs: 60_000 });
  assert.equal(r.code, 0, `promtool check metrics (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}; apt-get install prometheus): ${r.stdout.toString()}${r.stderr}`);
}

/** /status as JSON. */
export async function status(admin: string): Promise<AdminStatus> {
  const res = await fetch(`http://${admin}/status`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  return (await res.json()) as AdminStatus;
}
