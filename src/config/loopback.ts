/** Loopback addresses: 127.0.0.0/8 and ::1, IPv4-mapped IPv6 (a dual-stack listener's view) included. */
import net from 'node:net';

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined || net.isIP(address) === 0) return false;
  // check() also matches IPv4-mapped IPv6 (::ffff:127.0.0.1) against the IPv4 subnet.
  return LOOPBACK.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
}
