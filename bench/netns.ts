/**
 * The load generator in its own network namespace, joined to the servers'
 * by a veth pair (as in the dissertation's set-up), so client and server do
 * not share loopback's shortcuts and the client's packets cross a real
 * device. Needs CAP_NET_ADMIN; without it the run falls back to loopback and
 * the results say so.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ClientNet {
  /** 'veth' or 'loopback' (and why). */
  kind: 'veth' | 'loopback';
  note: string;
  /** Address the servers listen on and the client connects to. */
  serverAddress: string;
  /** Prefix for client commands: ['ip', 'netns', 'exec', name] or []. */
  prefix: string[];
  /**
   * Bytes the servers sent to / received from the client so far, from the
   * server-side veth's counters (TLS records plus TCP/IP headers); null on
   * loopback, where the origin's traffic would count too.
   */
  wireBytes(): { tx: number; rx: number } | null;
  close(): Promise<void>;
}

const SERVER_ADDR = '10.213.0.1';
const CLIENT_ADDR = '10.213.0.2';

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

export async function setUpClientNet(wanted: boolean): Promise<ClientNet> {
  const loopback = (note: string): ClientNet => ({ kind: 'loopback', note, serverAddress: '127.0.0.1', prefix: [], wireBytes: () => null, close: async () => {} });
  if (!wanted) return loopback('loopback (--loopback given)');
  // Names carry the pid so that two runs never collide; interface names are at most 15 bytes.
  const ns = `aludel-bench-${process.pid}`;
  const hostIf = `abs${process.pid % 100000}`;
  const clientIf = `abc${process.pid % 100000}`;
  try {
    await ip('netns', 'add', ns);
    await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', clientIf);
    await ip('link', 'set', clientIf, 'netns', ns);
    await ip('addr', 'add', `${SERVER_ADDR}/30`, 'dev', hostIf);
    await ip('link', 'set', hostIf, 'up');
    await ip('-n', ns, 'addr', 'add', `${CLIENT_ADDR}/30`, 'dev', clientIf);
    await ip('-n', ns, 'link', 'set', clientIf, 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
  } catch (err) {
    await run('ip', ['link', 'del', hostIf]).catch(() => {});
    await run('ip', ['netns', 'del', ns]).catch(() => {});
    return loopback(`loopback: network namespace set-up failed (${(err as Error).message.split('\n')[0]})`);
  }
  return {
    kind: 'veth',
    note: `client in network namespace ${ns}, veth ${hostIf} <-> ${clientIf}, ${SERVER_ADDR} <- ${CLIENT_ADDR}`,
    serverAddress: SERVER_ADDR,
    prefix: ['ip', 'netns', 'exec', ns],
    wireBytes() {
      const read = (what: string): number => Number(fs.readFileSync(`/sys/class/net/${hostIf}/statistics/${what}`, 'utf8'));
      return { tx: read('tx_bytes'), rx: read('rx_bytes') };
    },
    async close() {
      // Deleting one end of a veth pair deletes both.
      await run('ip', ['link', 'del', hostIf]).catch(() => {});
      await run('ip', ['netns', 'del', ns]).catch(() => {});
    },
  };
}
