/**
 * --offload-policy. `default` keeps the TLS settings as given. `prefer-hw`
 * narrows a listener to TLS 1.2 with AES-128-GCM when the NIC(s) it serves
 * encrypt kTLS records (tls-hw-tx-offload on), because that is all mainline
 * device offload takes (tls_set_device_offload in net/tls/tls_device.c); a
 * TLS 1.3 connection there would be encrypted by the CPU. Otherwise nothing
 * changes, and the start-up log says why.
 *
 * Which interfaces serve a listener: the one(s) holding its address; for
 * 0.0.0.0 every interface with an IPv4 address, for :: every interface (the
 * socket is dual-stack). prefer-hw then needs tls-hw-tx-offload on every one
 * of them except loopback: a wildcard listener's loopback clients are local,
 * loopback never offloads, and counting it would rule prefer-hw out for every
 * wildcard listener. A listener on a loopback address itself is never
 * narrowed. Only interfaces that are up with a carrier count (those are what
 * os.networkInterfaces() lists): a down NIC carries no connections.
 *
 * decideHwPolicy() is pure (tested on fake tables); resolveHwPolicy() reads
 * this host.
 */
import net from 'node:net';
import os from 'node:os';
import { formatFeature, readNicFeatures, type NicReport } from '../offload/nic-features.js';
import { decideOffload } from './offload.js';
import { DEVICE_OFFLOAD_CIPHERS } from './policy.js';
import type { OffloadMode, OffloadPolicy, TlsVersionName } from '../config/tls-settings.js';
import { isLoopback } from '../config/loopback.js';

/** The client-side TLS settings of a listener; cipherList undefined = the defaults of policy.ts. */
export interface ListenerTls {
  minVersion: TlsVersionName;
  maxVersion: TlsVersionName;
  cipherList?: string;
}

/** What prefer-hw looks at on this host. */
export interface HostView {
  /** kTLS is on for this listener (the NIC only takes the crypto of kTLS sockets), else why not. */
  ktls: { on: boolean; reason: string | null };
  /** os.networkInterfaces(): the addresses of the interfaces that are up with a carrier. */
  addresses: NodeJS.Dict<os.NetworkInterfaceInfo[]>;
  nics: NicReport;
}

export interface ServingInterface {
  name: string;
  loopback: boolean;
  /** tls-hw-tx-offload as ethtool prints it ("on [fixed]", "off", "absent", "not read"). */
  tlsTx: string;
  offload: boolean;
}

export interface HwPolicyDecision {
  policy: OffloadPolicy;
  /** TLS 1.2 with device-offloadable suites only, on this listener. */
  preferHw: boolean;
  /** The interfaces that serve the listen address ([] under the default policy: not looked at). */
  interfaces: ServingInterface[];
  /** Why prefer-hw left the settings alone; [] when it applied or was not asked for. */
  reasons: string[];
  /** What the listener uses. */
  tls: ListenerTls;
}

function canonical(address: string): string {
  return new net.SocketAddress({ address, family: net.isIPv6(address) ? 'ipv6' : 'ipv4' }).address;
}

/** The interfaces (up) that serve `host`, each with its TLS TX offload state. */
function servingInterfaces(host: string, view: Pick<HostView, 'addresses' | 'nics'>): ServingInterface[] {
  const any6 = net.isIPv6(host) && canonical(host) === '::';
  const any4 = host === '0.0.0.0';
  const want = canonical(host);
  const out: ServingInterface[] = [];
  for (const [name, infos = []] of Object.entries(view.addresses)) {
    const serves = infos.some((a) => any6 || (any4 && a.family === 'IPv4') || canonical(a.address) === want || (isLoopback(host) && a.internal));
    if (!serves) continue;
    const nic = view.nics.interfaces.find((i) => i.name === name);
    const tx = nic?.features['tls-hw-tx-offload'] ?? null;
    out.push({ name, loopback: infos.some((a) => a.internal), tlsTx: nic && !nic.error ? formatFeature(tx) : 'not read', offload: tx?.active === true });
  }
  return out;
}

function usualTls(policy: OffloadPolicy, tls: ListenerTls, interfaces: ServingInterface[] = [], reasons: string[] = []): HwPolicyDecision {
  return { policy, preferHw: false, interfaces, reasons, tls };
}

export function decideHwPolicy(policy: OffloadPolicy, host: string, tls: ListenerTls, view: HostView): HwPolicyDecision {
  if (policy === 'default') return usualTls(policy, tls);
  const interfaces = servingInterfaces(host, view);
  const wildcard = host === '0.0.0.0' || (net.isIPv6(host) && canonical(host) === '::');
  const reasons: string[] = [];
  if (!view.ktls.on) reasons.push(`kernel TLS is off (${view.ktls.reason ?? 'unknown reason'}), and a NIC only takes the crypto of kTLS sockets`);
  if (tls.minVersion === 'TLSv1.3') reasons.push('the TLS range starts at 1.3, and NIC offload takes TLS 1.2 only');
  if (view.nics.status === 'unavailable') {
    reasons.push(`NIC features not read: ${view.nics.problem}`);
  } else {
    const counted = wildcard ? interfaces.filter((i) => !i.loopback) : interfaces;
    if (interfaces.length === 0) reasons.push(`no interface that is up holds ${host}`);
    else if (counted.length === 0) reasons.push(`only loopback serves ${host}`);
    for (const i of counted.filter((c) => !c.offload)) reasons.push(`${i.name} has no NIC TLS offload (tls-hw-tx-offload ${i.tlsTx})`);
  }
  if (reasons.length > 0) return usualTls(policy, tls, interfaces, reasons);
  return { policy, preferHw: true, interfaces, reasons, tls: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', cipherList: tls.cipherList ?? DEVICE_OFFLOAD_CIPHERS } };
}

/** The start-up line: which way prefer-hw went, and why. */
export function describeHwPolicy(d: HwPolicyDecision): string {
  if (d.preferHw) {
    const suites = d.tls.cipherList === DEVICE_OFFLOAD_CIPHERS ? 'AES-128-GCM' : 'the given cipher list';
    const nics = d.interfaces.filter((i) => i.offload).map((i) => i.name);
    return `offload policy prefer-hw: TLS 1.2 with ${suites} only, so the NIC can encrypt (tls-hw-tx-offload on: ${nics.join(', ')})`;
  }
  const range = d.tls.minVersion === d.tls.maxVersion ? d.tls.minVersion : `${d.tls.minVersion}-${d.tls.maxVersion.replace('TLSv', '')}`;
  return `offload policy ${d.policy}: behaving as usual (${range}): ${d.reasons.join('; ')}`;
}

/** decideHwPolicy() on this host; reads nothing under the default policy. */
export function resolveHwPolicy(policy: OffloadPolicy, host: string, offload: OffloadMode, tls: ListenerTls): HwPolicyDecision {
  if (policy === 'default') return usualTls(policy, tls);
  const o = decideOffload(offload);
  const ktls = { on: o.ktls, reason: o.ktls ? null : (o.reason ?? `--offload ${o.requested}`) };
  return decideHwPolicy(policy, host, tls, { ktls, addresses: os.networkInterfaces(), nics: readNicFeatures() });
}
