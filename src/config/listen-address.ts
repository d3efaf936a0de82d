import net from 'node:net';
import { InvalidOptionError } from '../errors.js';

/**
 * Parses an nginx-style listen value: "127.0.0.1:8443", "[::1]:8443",
 * ":8443" or "8443" (all IPv4 addresses, as nginx's `listen 8443`).
 */
export function parseListen(value: string): { host: string; port: number } {
  const v = value.trim();
  // One pattern per accepted form, so a bare port is never split into "host" and "port" digits.
  const m = /^(\d+)$/.exec(v) ?? /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(v) ?? /^([0-9.]*):(\d+)$/.exec(v);
  const bare = m !== null && m.length === 2;
  const host = m === null ? '' : bare ? '0.0.0.0' : m[1] || '0.0.0.0';
  const port = m === null ? NaN : Number(bare ? m[1] : m[2]);
  if (m === null || net.isIP(host) === 0 || !Number.isInteger(port) || port > 65535) {
    throw new InvalidOptionError(`--listen ${JSON.stringify(value)}: expected ADDRESS:PORT with a numeric address, e.g. 127.0.0.1:8443, [::1]:8443 or :8443`);
  }
  return { host, port };
}

/**
 * --admin: as --listen, except that a value without an address ("9100" or
 * ":9100") binds 127.0.0.1, not every address: the admin listener shows the
 * process's internals and is meant for a Prometheus on the same host.
 */
export function parseAdminAddress(value: string): { host: string; port: number } {
  const bare = /^\s*:?(\d+)\s*$/.exec(value);
  if (bare !== null && Number(bare[1]) <= 65535) return { host: '127.0.0.1', port: Number(bare[1]) };
  return parseListen(value);
}
