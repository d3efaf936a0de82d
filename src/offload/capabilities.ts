/**
 * What this host can do for TLS, probed once per process: the addon, the
 * system OpenSSL it binds (Node's own copy has no kTLS), and a live TCP_ULP
 * probe of the kernel. The doctor reports it; tls/offload.ts decides
 * --offload from it.
 */
import os from 'node:os';
import { loadAddon, type Native, type OpensslProbe } from '../native/binding.js';
import { probeNotRun, probeNotRunText, tlsModuleStatus } from './kernel-tls.js';

/** The system library is looked up by soname, as the dynamic linker would. */
export const SYSTEM_LIBSSL = process.env.ALUDEL_LIBSSL ?? 'libssl.so.3';

export interface Capabilities {
  native: Native | null;
  openssl: OpensslProbe | null;
  /** Why the system OpenSSL path is unusable (addon missing, no libssl, Node's copy). */
  opensslProblem: string | null;
  /** Why the kernel cannot do TLS here, with what to do about it; null when it can. */
  kernelProblem: string | null;
}

let probed: Capabilities | undefined;

/** Loads the addon and system libssl and asks the kernel; cached for the process. */
export function probeCapabilities(): Capabilities {
  if (probed) return probed;
  const addon = loadAddon();
  if (addon instanceof Error) {
    probed = { native: null, openssl: null, opensslProblem: `native addon not available (${addon.message.split('\n')[0]}); run npm run build:native`, kernelProblem: null };
    return probed;
  }
  let openssl: OpensslProbe | null = null;
  let opensslProblem: string | null = null;
  if (process.platform !== 'linux') {
    opensslProblem = `kernel TLS is Linux-only (this is ${process.platform})`;
  } else {
    try {
      openssl = addon.loadOpenssl(SYSTEM_LIBSSL);
      if (openssl.nodeCopy) {
        opensslProblem = `${SYSTEM_LIBSSL} resolved to the OpenSSL inside the node binary (${openssl.version}), which is built without kTLS`;
        openssl = null;
      } else if (openssl.versionNumber < 0x30000000) {
        opensslProblem = `system OpenSSL is ${openssl.version}; kTLS with SSL_sendfile needs OpenSSL >= 3.0`;
        openssl = null;
      }
    } catch (err) {
      opensslProblem = `cannot load the system OpenSSL: ${(err as Error).message}; install libssl3 (Debian: apt-get install libssl3)`;
    }
  }
  probed = { native: openssl ? addon : null, openssl, opensslProblem, kernelProblem: openssl ? kernelProblem(addon) : null };
  return probed;
}

/** Why the kernel cannot take the TLS ULP here, with what to do; null when it can (live TCP_ULP probe). */
export function kernelProblem(native: Native): string | null {
  const r = native.probeTcpUlp();
  if (r.errno === 0) return null;
  const release = os.release();
  if (r.code === 'ENOENT') {
    return tlsModuleStatus('/', release).status === 'loadable'
      ? `the kernel TLS module is not loaded (setsockopt TCP_ULP "tls": ENOENT); run: modprobe tls (kernel ${release})`
      : `kernel ${release} has no TLS support (CONFIG_TLS unset, no tls module); use a kernel built with CONFIG_TLS=m or y (Linux >= 4.13; TLS 1.3 >= 5.1; ChaCha20 >= 5.11)`;
  }
  if (probeNotRun(r)) return probeNotRunText(r);
  return `the kernel refused the TLS ULP: ${r.syscall} failed with ${r.code ?? r.errno}`;
}

/** For tests: forget the cached probe. */
export function resetCapabilitiesForTest(): void {
  probed = undefined;
}
