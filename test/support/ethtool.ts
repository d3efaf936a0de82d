/**
 * `ethtool -k IFACE` as feature -> state ("on", "off [fixed]", ...), to check
 * what Aludel reads from the kernel against the tool admins trust. Tests
 * only: Aludel itself never runs ethtool (Debian: apt-get install ethtool).
 */
import { run } from './run-process.js';

/** `prefix` runs it elsewhere, e.g. ['ip', 'netns', 'exec', name]. */
export async function ethtoolK(ifname: string, prefix: readonly string[] = []): Promise<Record<string, string>> {
  const [cmd, ...args] = [...prefix, 'ethtool', '-k', ifname];
  const r = await run(cmd!, args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${[cmd, ...args].join(' ')} failed (${r.signal ?? r.code}): ${r.stderr.trim() || 'not installed? apt-get install ethtool'}`);
  const out: Record<string, string> = {};
  for (const line of r.stdout.toString('utf8').split('\n')) {
    const m = /^\s*([a-z0-9-]+): (on|off)(.*)$/.exec(line);
    if (m) out[m[1]!] = `${m[2]}${m[3]!.trimEnd()}`;
  }
  return out;
}
