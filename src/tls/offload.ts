/**
 * Resolves --offload once at start-up (nginx checks kTLS at build time and
 * then per connection; we check what we can before listening, and every
 * connection reports what the kernel really took). What the host can do is
 * probed by offload/capabilities.ts; this is the decision made from it.
 */
import { KtlsUnavailableError } from '../errors.js';
import { probeCapabilities, type Capabilities } from '../offload/capabilities.js';
import type { OffloadDecision } from './types.js';
import type { OffloadMode } from '../config/tls-settings.js';

/** Applies the mode to what is available; throws KtlsUnavailableError for kernel mode. */
export function decideOffload(requested: OffloadMode, caps: Capabilities = probeCapabilities()): OffloadDecision {
  const openssl = caps.openssl ? { version: caps.openssl.version, libssl: caps.openssl.libssl } : null;
  const problem = caps.opensslProblem ?? caps.kernelProblem;
  if (requested === 'kernel' && problem) {
    throw new KtlsUnavailableError(`--offload kernel: kTLS cannot work here: ${problem}. Fix that, or run with --offload auto (falls back to userspace TLS).`);
  }
  if (!caps.openssl) {
    return { requested, engine: 'node-tls', ktls: false, openssl: null, reason: caps.opensslProblem };
  }
  if (requested === 'userspace') return { requested, engine: 'system-openssl', ktls: false, openssl, reason: null };
  return { requested, engine: 'system-openssl', ktls: caps.kernelProblem === null, openssl, reason: caps.kernelProblem };
}
