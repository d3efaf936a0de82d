import net from 'node:net';
import { InvalidOptionError } from '../errors.js';

/**
 * Parses an nginx-style listen value: "127.0.0.1:8443", "[::1]:8443",
 * ":8443" or "8443" (all IPv4 addresses, as nginx's `listen 8443`).
 */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]*)):?(\d+)$/.exec(value.trim());
  const host = m ? (m[1] ?? (m[2] || '0.0.0.0')) : '';
  const port = m ? Number(m[3]) : NaN;
  if (!m || net.isIP(host) === 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidOptionError(`--listen ${JSON.stringify(value)}: expected ADDRESS:PORT with a numeric address, e.g. 127.0.0.1:8443, [::1]:8443 or :8443`);
  }
  return { host, port };
}
