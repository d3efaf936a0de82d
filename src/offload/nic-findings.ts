/**
 * What `aludel doctor` says about NIC offload: one finding per interface that
 * has a TLS or ESP offload feature (available or on), then a summary for the
 * host. Mainline kTLS device offload takes TLS 1.2 only
 * (tls_set_device_offload in net/tls/tls_device.c returns EOPNOTSUPP for other
 * versions and the kernel falls back to software kTLS), hence --offload-policy
 * prefer-hw in the advice.
 */
import type { Finding } from './doctor.js';
import { formatFeature, NIC_FEATURES, type NicFeature, type NicInterface, type NicReport } from './nic-features.js';

const TLS_DIRECTIONS = ['tls-hw-tx-offload', 'tls-hw-rx-offload'] as const satisfies readonly NicFeature[];
const PREFER_HW = 'serve there with --offload-policy prefer-hw (mainline device offload takes TLS 1.2 AES-GCM only); a connection\'s kernelTx/kernelRx says hw when the NIC took it';

const on = (i: NicInterface, f: NicFeature): boolean => i.features[f]?.active === true;
/** Available but off: one `ethtool -K` away. */
const canTurnOn = (i: NicInterface, f: NicFeature): boolean => i.features[f]?.available === true && !on(i, f);
const present = (i: NicInterface, f: NicFeature): boolean => on(i, f) || canTurnOn(i, f);

function interfaceFinding(i: NicInterface): Finding | null {
  if (i.error) {
    return { level: 'warn', area: 'nic', what: `${i.name}: features not read (${i.error.syscall ?? 'ioctl'}: ${i.error.code})`, advice: `run doctor again (ENODEV: the interface went away meanwhile); by hand: ethtool -k ${i.name}` };
  }
  const shown = NIC_FEATURES.filter((f) => present(i, f));
  if (shown.length === 0) return null;
  const what = `${i.name}: ${shown.map((f) => `${f} ${formatFeature(i.features[f])}`).join(', ')}`;
  const advice: string[] = [];
  const tlsOff = TLS_DIRECTIONS.filter((f) => canTurnOn(i, f));
  const tlsOn = TLS_DIRECTIONS.filter((f) => on(i, f));
  if (tlsOff.length > 0) advice.push(`turn NIC TLS offload on: ethtool -K ${i.name} ${tlsOff.map((f) => `${f} on`).join(' ')}; then ${PREFER_HW}`);
  else if (tlsOn.length > 0) {
    const verbs = tlsOn.map((f) => (f === 'tls-hw-tx-offload' ? 'encrypt' : 'decrypt')).join(' and ');
    advice.push(`the NIC can ${verbs} kTLS records of connections routed through ${i.name}: ${PREFER_HW}`);
  }
  if (on(i, 'tls-hw-record')) {
    advice.push(`tls-hw-record is a TCP offload engine (TLS_TOE): its connections bypass the kernel's TCP stack (netfilter, tc) and show as hw-record; ethtool -K ${i.name} tls-hw-record off where those must see the traffic`);
  }
  if (present(i, 'esp-hw-offload') || present(i, 'esp-tx-csum-hw-offload')) {
    const espOff = (['esp-hw-offload', 'esp-tx-csum-hw-offload'] as const).filter((f) => canTurnOn(i, f));
    advice.push(`ESP offload serves IPsec (xfrm), not TLS${espOff.length > 0 ? `; for IPsec: ethtool -K ${i.name} ${espOff.map((f) => `${f} on`).join(' ')}` : ''}`);
  }
  return { level: tlsOff.length > 0 ? 'warn' : 'ok', area: 'nic', what, advice: advice.join('; ') };
}

function summary(r: NicReport, kernelTls: boolean): Finding {
  const names = (pred: (i: NicInterface) => boolean): string[] => r.interfaces.filter(pred).map((i) => i.name);
  const active = names((i) => TLS_DIRECTIONS.some((f) => on(i, f)));
  const off = names((i) => TLS_DIRECTIONS.some((f) => canTurnOn(i, f)));
  if (active.length > 0) {
    return { level: 'ok', area: 'nic', what: `NIC TLS offload on: ${active.join(', ')}`, advice: `TLS 1.2 AES-GCM connections through ${active.length > 1 ? 'these interfaces' : 'it'} can be encrypted by the NIC: ${PREFER_HW}` };
  }
  if (off.length > 0) {
    return { level: 'warn', area: 'nic', what: `NIC TLS offload available but off: ${off.join(', ')}`, advice: 'turn it on with the ethtool -K line of each interface above' };
  }
  const known = r.interfaces.some((i) => i.features['tls-hw-tx-offload'] !== null);
  return {
    level: 'ok',
    area: 'nic',
    what: `no NIC TLS offload on this host${known ? '' : ' (this kernel names no tls-hw-* features: device offload arrived in Linux 4.18)'}: ${
      kernelTls ? "crypto runs in the kernel's software kTLS (on the CPU, or a crypto driver above)" : 'crypto runs in userspace OpenSSL (no kernel TLS here, see above)'
    }`,
    advice: 'nothing to do; NIC offload needs a NIC whose driver implements kTLS device offload (e.g. mlx5: NVIDIA ConnectX-6 Dx and later), for TLS 1.2 AES-GCM only in mainline',
  };
}

/** kernelTls: the kernel can take TLS keys now (says where the crypto runs instead). */
export function nicFindings(r: NicReport, kernelTls: boolean): Finding[] {
  if (r.status === 'unavailable') {
    return [{ level: 'warn', area: 'nic', what: `NIC offload features not read: ${r.problem}`, advice: 'check by hand: ethtool -k <interface> | grep -E "tls|esp"' }];
  }
  const perInterface = r.interfaces.map(interfaceFinding).filter((f): f is Finding => f !== null);
  return [...perInterface, summary(r, kernelTls)];
}
