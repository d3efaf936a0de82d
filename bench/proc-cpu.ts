/**
 * Server CPU time from /proc/<pid>/stat (proc(5)): utime + stime, fields 14
 * and 15, in clock ticks. They cover every thread of the process (libuv's
 * pool included) but not reaped children, which none of the servers have.
 * On veth, part of the receiver's softirq work is charged to whichever
 * process is running, so server system time carries some network cost too.
 * Kernel TLS encrypts inside the sending process's sendmsg (net/tls/tls_sw.c;
 * x86 AES-GCM runs there unless the driver must defer it to cryptd), so that
 * crypto lands in the server's stime.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface CpuTicks {
  utime: number;
  stime: number;
}

/**
 * Field 2 (comm) is in parentheses and may itself hold spaces and ')', so
 * the fields are counted from the last ')'.
 */
export function parseProcStat(text: string): CpuTicks {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error(`not a /proc/<pid>/stat line: ${JSON.stringify(text.slice(0, 80))}`);
  // After ") " comes field 3 (state): field n is at index n - 3.
  const fields = text.slice(close + 2).trim().split(/\s+/);
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isInteger(utime) || !Number.isInteger(stime)) throw new Error(`no utime/stime in /proc/<pid>/stat: ${JSON.stringify(text.slice(0, 200))}`);
  return { utime, stime };
}

/**
 * cutime + cstime (fields 16 and 17, clock ticks) of the last /proc/<pid>/stat
 * line in `text`: the CPU of the children that process waited for (proc(5)),
 * how the bench learns what a client it ran through `sh -c` used. Lines
 * before it (a program's own stderr) are ignored.
 */
export function parseChildTicks(text: string): number {
  const line = text.trimEnd().split('\n').pop() ?? '';
  const close = line.lastIndexOf(')');
  const fields = close < 0 ? [] : line.slice(close + 2).trim().split(/\s+/);
  const cutime = Number(fields[16 - 3]);
  const cstime = Number(fields[17 - 3]);
  if (!Number.isInteger(cutime) || !Number.isInteger(cstime)) throw new Error(`no cutime/cstime in the last line of: ${JSON.stringify(text.slice(-300))}`);
  return cutime + cstime;
}

/** Field 4 (ppid) of a /proc/<pid>/stat line, counted from the last ')' as above. */
export function parseParentPid(text: string): number {
  const close = text.lastIndexOf(')');
  const ppid = Number(text.slice(close + 2).trim().split(/\s+/)[4 - 3]);
  if (close < 0 || !Number.isInteger(ppid)) throw new Error(`no ppid in /proc/<pid>/stat: ${JSON.stringify(text.slice(0, 200))}`);
  return ppid;
}

/**
 * `root` and every process descended from it, read now from /proc/<pid>/stat
 * (`aludel run` is a Node process whose child is the program; nginx with a
 * master has its workers below it). Processes that end during the scan are
 * skipped.
 */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const ppid = parseParentPid(text);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0 && out.length < 10_000) {
    const pid = todo.shift()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** sysconf(_SC_CLK_TCK): 100 on every Linux architecture Debian ships, but asked rather than assumed. */
export function clockTicksPerSecond(): number {
  const hz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  if (!(hz > 0)) throw new Error('getconf CLK_TCK gave no number');
  return hz;
}

/** Summed user + system seconds of the processes, read now. */
export function cpuSeconds(pids: readonly number[], hz: number): number {
  let ticks = 0;
  for (const pid of pids) {
    const { utime, stime } = parseProcStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    ticks += utime + stime;
  }
  return ticks / hz;
}
