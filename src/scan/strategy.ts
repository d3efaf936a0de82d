/**
 * Which TLS library a process maps, and which strategy `aludel run` (no
 * --strategy flag) would take with it. Pure: the inputs are the version text
 * found in the mapped library (proc-maps.ts findVersionText) and its file name.
 *
 * The rule follows what the preload decides at run time from
 * OpenSSL_version_num()/SSLeay() and OpenSSL_version()/SSLeay_version():
 * - OpenSSL 3.x (and later): `option`. SSL_OP_ENABLE_KTLS (bit 3 from 3.0 on)
 *   makes OpenSSL program the kernel itself after each handshake.
 * - OpenSSL 1.1.1 and 1.0.2: `keys`. They have no kTLS of their own; the
 *   preload derives the record keys after the handshake and programs
 *   TLS_TX/TLS_RX (1.1.1: TLS 1.2 and 1.3, AES-GCM and ChaCha20-Poly1305;
 *   1.0.2: TLS 1.2 AES-GCM, read through the 1.0.2 structures).
 * - Anything else gets no strategy and an untouched program: 1.1.0 and
 *   1.0.1 or older (other ABIs), LibreSSL (OpenSSL_version_num() is always
 *   0x20000000), BoringSSL and AWS-LC ("OpenSSL 1.1.1 (compatible; ...)").
 */

export type RunStrategy = 'option' | 'keys';

export interface TlsLibrary {
  /** 'OpenSSL', 'LibreSSL', 'BoringSSL', 'AWS-LC'...; null when only the soname is known. */
  name: string | null;
  /** '3.0.19', '1.1.1w', '1.0.2f', '3.8.2'; the soname's version ('1.1') when there is no version text. */
  version: string | null;
  /** The version text as found in the library, e.g. 'OpenSSL 1.0.2f  28 Jan 2016'. */
  text: string | null;
}

export interface RunChoice {
  /** What `aludel run` with no flag would do with this library; null: nothing (the program runs unchanged). */
  strategy: RunStrategy | null;
  /** 'OpenSSL 1.0.2f', 'LibreSSL 3.8.2', 'libssl.so.1.1 (no version text)'. */
  label: string;
  why: string;
}

/** "libssl.so.3" -> "3", "libssl.so.1.1" -> "1.1", "libssl.so" -> null. */
export function sonameVersion(file: string): string | null {
  const m = /\.so\.(\d+(?:\.\d+)*)$/.exec(file);
  return m ? m[1]! : null;
}

/** The library behind a version text (or, without one, behind the soname of `file`). */
export function identifyLibrary(text: string | null, file: string | null): TlsLibrary {
  if (text !== null) {
    const compatible = /^OpenSSL \S+ \(compatible; ([A-Za-z][\w-]*)(?: (\S+?))?\)/.exec(text);
    if (compatible) return { name: compatible[1]!, version: compatible[2] ?? null, text };
    const m = /^(OpenSSL|LibreSSL) (\d+\.\d+\.\d+[a-z]*)/.exec(text);
    if (m) return { name: m[1]!, version: m[2]!, text };
  }
  return { name: null, version: file ? sonameVersion(file) : null, text: null };
}

export function libraryLabel(lib: TlsLibrary, file: string | null): string {
  if (lib.name !== null) return lib.version ? `${lib.name} ${lib.version}` : lib.name;
  const base = file ? file.slice(file.lastIndexOf('/') + 1) : 'libssl';
  return `${base} (no version text)`;
}

/** See the file comment. `file` is the mapped libssl. */
export function chooseStrategy(lib: TlsLibrary, file: string | null): RunChoice {
  const label = libraryLabel(lib, file);
  const none = (why: string): RunChoice => ({ strategy: null, label, why });
  if (lib.name === null) {
    // No version text: only the soname speaks. libssl.so.3 is OpenSSL 3's ABI; "1.1" could be 1.1.0 or 1.1.1, "1.0.0" any 1.0.x.
    if (lib.version !== null && /^3(\.|$)/.test(lib.version)) return { strategy: 'option', label, why: 'OpenSSL 3 by its soname: the preload sets SSL_OP_ENABLE_KTLS' };
    return none('no version text in the library, so no strategy can be chosen from outside');
  }
  if (lib.name !== 'OpenSSL') return none(`${lib.name} is not OpenSSL: neither strategy applies, and aludel run leaves it alone`);
  const v = /^(\d+)\.(\d+)\.(\d+)/.exec(lib.version ?? '');
  if (!v) return none('unrecognised OpenSSL version');
  const [major, minor, patch] = [Number(v[1]), Number(v[2]), Number(v[3])];
  if (major >= 3) return { strategy: 'option', label, why: 'OpenSSL 3 drives kTLS itself once the preload sets SSL_OP_ENABLE_KTLS' };
  if (major === 1 && minor === 1 && patch === 1) {
    return { strategy: 'keys', label, why: 'OpenSSL 1.1.1 has no kTLS: the preload gives each connection\'s keys to the kernel after the handshake, TLS 1.2 and 1.3' };
  }
  if (major === 1 && minor === 0 && patch === 2) {
    return { strategy: 'keys', label, why: 'OpenSSL 1.0.2 has no kTLS: the preload gives each TLS 1.2 AES-GCM connection\'s keys to the kernel after the handshake' };
  }
  return none('neither strategy covers this OpenSSL (keys needs 1.0.2 or 1.1.1, option 3.x)');
}
