/**
 * Server memory from /proc (proc(5)): VmRSS and RssAnon of /proc/<pid>/status,
 * per process or summed over a process tree (a primary and its workers, an
 * nginx master and its workers), and a wait for RSS to stop moving.
 *
 * Summing VmRSS over a tree counts pages shared after fork(2) once per process
 * (copy-on-write pages not yet written): a whole-tree figure overstates the
 * tree's footprint, but a growth (after - before) is what the connections
 * added, since a page a connection touches is private to one process.
 */
import fs from 'node:fs';
import { processTree } from './proc-cpu.js';

export interface ProcMemory {
  rssKiB: number;
  anonKiB: number;
}

/** VmRSS and RssAnon of /proc/<pid>/status, in KiB. */
export function readProcMemory(pid: number): ProcMemory {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKiB: field('VmRSS'), anonKiB: field('RssAnon') };
}

/** readProcMemory summed over `root` and its descendants, read now; a process that ends during the read is skipped. */
export function readTreeMemory(root: number): ProcMemory & { pids: number[] } {
  const out = { rssKiB: 0, anonKiB: 0, pids: [] as number[] };
  for (const pid of processTree(root)) {
    let m: ProcMemory;
    try {
      m = readProcMemory(pid);
    } catch {
      continue;
    }
    // Zombies and kernel threads have no VmRSS line.
    if (!Number.isFinite(m.rssKiB)) continue;
    out.rssKiB += m.rssKiB;
    out.anonKiB += Number.isFinite(m.anonKiB) ? m.anonKiB : 0;
    out.pids.push(pid);
  }
  return out;
}

/**
 * Waits until `rssKiB()` moves less than 0.5 % over two 500 ms reads (at most
 * `maxMs`); returns the seconds waited. RSS does not settle at once: V8 and
 * malloc go on touching pages after the last connection is accepted.
 */
export async function settleRss(rssKiB: () => number, maxMs = 15_000): Promise<number> {
  const start = Date.now();
  let prev = rssKiB();
  let calm = 0;
  while (calm < 2 && Date.now() - start < maxMs) {
    await new Promise((r) => setTimeout(r, 500));
    const now = rssKiB();
    calm = Math.abs(now - prev) <= prev * 0.005 ? calm + 1 : 0;
    prev = now;
  }
  return (Date.now() - start) / 1000;
}
