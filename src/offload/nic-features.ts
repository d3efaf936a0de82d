/**
 * NIC offload features per network interface, as `ethtool -k` shows them,
 * read from the kernel (SIOCETHTOOL, native/ethtool.c) rather than by parsing
 * a tool that may not be installed. Reading only: what the states mean is
 * decided by doctor (nic-findings.ts) and --offload-policy (hw-offload-policy.ts).
 */
import { isNativeError, loadAddon, type EthtoolFeatureWords, type Native } from '../native/binding.js';

/**
 * The features that say where TLS (and IPsec ESP) crypto can run on a NIC:
 * kTLS device offload per direction (Linux 4.18 TX, 4.19 RX), Chelsio-style
 * TOE record offload, and IPsec ESP offload (shown for IPsec deployments; TLS
 * does not use it).
 */
export const NIC_FEATURES = ['tls-hw-tx-offload', 'tls-hw-rx-offload', 'tls-hw-record', 'esp-hw-offload', 'esp-tx-csum-hw-offload'] as const;
export type NicFeature = (typeof NIC_FEATURES)[number];

export interface NicFeatureState {
  /** The driver lets the user toggle it (`ethtool -K`): the bit is in hw_features. */
  available: boolean;
  /** Asked for (wanted_features); differs from active when the kernel or driver holds it back. */
  requested: boolean;
  /** On now. */
  active: boolean;
  /** ethtool's "[fixed]": not available, or a bit the kernel never changes. */
  fixed: boolean;
}

/** null: this kernel has no feature of that name (it predates the feature). */
export type NicFeatures = Record<NicFeature, NicFeatureState | null>;

export interface NicError {
  code: string;
  errno: number;
  syscall: string | null;
}

export interface NicInterface {
  name: string;
  index: number;
  features: NicFeatures;
  /** The ioctl failed for this interface (ENODEV: it went away while being read); its features are then all null. */
  error: NicError | null;
}

export interface NicReport {
  /** read: from the kernel; unavailable: the addon cannot ask it (problem says why). */
  status: 'read' | 'unavailable';
  problem: string | null;
  interfaces: NicInterface[];
}

const NO_FEATURES = Object.fromEntries(NIC_FEATURES.map((f) => [f, null])) as NicFeatures;

function bit(words: readonly number[], i: number): boolean {
  return (((words[i >>> 5] ?? 0) >>> (i & 31)) & 1) === 1;
}

/** The five features from the kernel's feature names (bit i = names[i]) and an interface's feature words. */
export function featureStates(names: readonly string[], words: EthtoolFeatureWords): NicFeatures {
  const out = { ...NO_FEATURES };
  for (const f of NIC_FEATURES) {
    const i = names.indexOf(f);
    if (i < 0 || i >>> 5 >= words.active.length) continue;
    const available = bit(words.available, i);
    out[f] = { available, requested: bit(words.requested, i), active: bit(words.active, i), fixed: !available || bit(words.neverChanged, i) };
  }
  return out;
}

/**
 * A state as `ethtool -k` prints it: "on", "off [fixed]", "off [requested on]"
 * (the suffixes exclude each other there too); "absent" when the kernel lacks it.
 */
export function formatFeature(s: NicFeatureState | null): string {
  if (s === null) return 'absent';
  const suffix = s.fixed ? ' [fixed]' : s.requested !== s.active ? ` [requested ${s.requested ? 'on' : 'off'}]` : '';
  return `${s.active ? 'on' : 'off'}${suffix}`;
}

/** Every interface of this network namespace (up or down) with the five features. */
export function readNicFeatures(addon: Native | Error = loadAddon()): NicReport {
  if (addon instanceof Error) {
    return { status: 'unavailable', problem: `native addon not available (${addon.message.split('\n')[0]}); run npm run build:native`, interfaces: [] };
  }
  let list: Array<{ index: number; name: string }>;
  try {
    list = addon.netInterfaces();
  } catch (err) {
    if (!isNativeError(err)) throw err;
    return { status: 'unavailable', problem: `cannot list network interfaces: ${err.message}`, interfaces: [] };
  }
  // The names are the kernel's (the same for every device); taken from the first interface that answers.
  let names: string[] | null = null;
  const interfaces = list.map(({ index, name }): NicInterface => {
    try {
      names ??= addon.ethtoolFeatureNames(name);
      return { name, index, features: featureStates(names, addon.ethtoolFeatures(name)), error: null };
    } catch (err) {
      if (!isNativeError(err)) throw err;
      return { name, index, features: { ...NO_FEATURES }, error: { code: err.code, errno: err.errno, syscall: err.syscall } };
    }
  });
  return { status: 'read', problem: null, interfaces };
}
