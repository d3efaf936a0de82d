/** What the fuzz run watches in the aludel process: open descriptors and resident memory, from /proc. */
import fs from 'node:fs';

/**
 * Entries of /proc/PID/fd, a path's first descriptor left out: what a leak
 * check compares. serve keeps one descriptor per file it served between
 * requests (src/http/open-files.ts, bounded, closed when the file changes or
 * lies unused), which is not a leak; a second descriptor of the same file
 * left after its response is, and still counts, as does every socket, pipe
 * and eventfd. Null when the process is gone.
 */
export function fdsBeyondKept(pid: number): number | null {
  let entries: string[];
  try {
    entries = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return null;
  }
  const paths = new Set<string>();
  let n = 0;
  for (const f of entries) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${f}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target.startsWith('/') && !paths.has(target)) paths.add(target);
    else n++;
  }
  return n;
}

/** What the descriptors of `pid` are, counted by kind (socket, pipe, anon_inode:[eventfd], a file...). */
export function fdKinds(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const f of fs.readdirSync(`/proc/${pid}/fd`)) {
      let kind: string;
      try {
        kind = fs.readlinkSync(`/proc/${pid}/fd/${f}`).replace(/:\[\d+\]$/, '');
      } catch {
        continue;
      }
      out[kind] = (out[kind] ?? 0) + 1;
    }
  } catch {
    // gone
  }
  return out;
}

/** VmRSS from /proc/PID/status, in KiB; null when the process is gone. */
export function rssKiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export interface Sampled {
  start: number;
  peak: number;
  end: number;
}

/** Samples fd count and RSS every `everyMs` until stop(). */
export class ProcSampler {
  fds: Sampled;
  rss: Sampled;
  private timer: NodeJS.Timeout;

  constructor(
    readonly pid: number,
    everyMs = 200,
  ) {
    // Counted as the leak check counts them (fdsBeyondKept): start, peak and end compare with it.
    const f = fdsBeyondKept(pid) ?? 0;
    const r = rssKiB(pid) ?? 0;
    this.fds = { start: f, peak: f, end: f };
    this.rss = { start: r, peak: r, end: r };
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  sample(): void {
    const f = fdsBeyondKept(this.pid);
    const r = rssKiB(this.pid);
    if (f !== null) {
      this.fds.end = f;
      this.fds.peak = Math.max(this.fds.peak, f);
    }
    if (r !== null) {
      this.rss.end = r;
      this.rss.peak = Math.max(this.rss.peak, r);
    }
  }

  stop(): void {
    this.sample();
    clearInterval(this.timer);
  }
}
