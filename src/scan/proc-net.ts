/**
 * A process's TCP sockets from /proc: /proc/<pid>/net/tcp{,6} list the
 * sockets of the process's network namespace with their inode, and
 * /proc/<pid>/fd/* -> "socket:[inode]" says which of them the process holds.
 */
import fs from 'node:fs';

/** include/net/tcp_states.h */
export const TCP_ESTABLISHED = 1;
export const TCP_LISTEN = 10;

export interface ProcTcpRow {
  /** "127.0.0.1", "::", "::ffff:127.0.0.1" */
  address: string;
  port: number;
  state: number;
  inode: number;
}

function ipv4(hex: string): string {
  // Four bytes in host (little-endian) order.
  const n = Number.parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join('.');
}

function ipv6(hex: string): string {
  // Four 32-bit words, each in host order.
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(Number.parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // Compress the longest run of zero groups (RFC 5952 §4.2).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Parses /proc/net/tcp or tcp6 ("sl local_address rem_address st ... inode"). */
export function parseProcNetTcp(text: string): ProcTcpRow[] {
  const rows: ProcTcpRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [addr, port] = f[1]!.split(':');
    if (!addr || !port) continue;
    rows.push({ address: addr.length === 8 ? ipv4(addr) : ipv6(addr), port: Number.parseInt(port, 16), state: Number.parseInt(f[3]!, 16), inode: Number(f[9]) });
  }
  return rows;
}

/** Inodes of the sockets a process holds open; empty when its fds are not ours to read. */
export function socketInodes(pid: number): Set<number> {
  const inodes = new Set<number>();
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** The TCP sockets of the process's network namespace (IPv4 and IPv6). */
export function readProcTcp(pid: number): ProcTcpRow[] {
  const rows: ProcTcpRow[] = [];
  for (const file of ['tcp', 'tcp6']) {
    try {
      rows.push(...parseProcNetTcp(fs.readFileSync(`/proc/${pid}/net/${file}`, 'utf8')));
    } catch {
      // no IPv6, or the process is gone
    }
  }
  return rows;
}
