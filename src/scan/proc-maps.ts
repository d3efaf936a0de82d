/**
 * Which OpenSSL a running process uses, from its memory map: the libssl and
 * libcrypto files the dynamic linker mapped (/proc/<pid>/maps), and their
 * version. A program with OpenSSL linked in statically (node, Go's crypto/tls)
 * maps neither, so its TLS library is "not visible" from outside. Other
 * shared TLS libraries are named so that scan can say why `aludel run`
 * (OpenSSL only) does not apply.
 */
import fs from 'node:fs';

export interface TlsLibraries {
  /** Path of the mapped libssl.so.*, or null. */
  libssl: string | null;
  libcrypto: string | null;
  /** aludel-preload.so is mapped: the process runs under `aludel run`. */
  preload: boolean;
  /** aludel.node is mapped: the process is Aludel itself (serve, proxy, tcp), which sets up kTLS on its own. */
  aludel: boolean;
  /** Another shared TLS library, e.g. 'GnuTLS (libgnutls.so.30)'; null if none. */
  otherTls: string | null;
}

const LIB = /^lib(ssl|crypto)\.so(\.\d+)*$/;

/** Shared TLS libraries that are not OpenSSL, by file name (NSS's TLS part is libssl3.so, which LIB does not match). */
const OTHER_TLS: Array<[RegExp, string]> = [
  [/^libgnutls\.so(\.\d+)*$/, 'GnuTLS'],
  [/^libssl3\.so$/, 'NSS'],
  [/^libmbedtls\.so(\.\d+)*$/, 'Mbed TLS'],
  [/^libwolfssl\.so(\.\d+)*$/, 'wolfSSL'],
];

/**
 * The libssl/libcrypto paths in a maps text; "(deleted)" (upgraded under a
 * running process) is kept off the path. With several libcrypto files mapped
 * (a plugin linking another OpenSSL), the one with libssl's soname version
 * is the one libssl uses.
 */
export function parseTlsLibraries(maps: string): TlsLibraries {
  const found: TlsLibraries = { libssl: null, libcrypto: null, preload: false, aludel: false, otherTls: null };
  const cryptos: string[] = [];
  for (const line of maps.split('\n')) {
    // address perms offset dev inode pathname: the path is the sixth field and may hold spaces.
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+(\/.*?)(?: \(deleted\))?$/.exec(line);
    if (!m) continue;
    const file = m[1]!;
    const base = file.slice(file.lastIndexOf('/') + 1);
    if (base === 'aludel-preload.so') found.preload = true;
    if (base === 'aludel.node') found.aludel = true;
    const other = OTHER_TLS.find(([re]) => re.test(base));
    if (other) found.otherTls ??= `${other[1]} (${base})`;
    const lib = LIB.exec(base);
    if (!lib) continue;
    if (lib[1] === 'ssl') found.libssl ??= file;
    else if (!cryptos.includes(file)) cryptos.push(file);
  }
  const suffix = (file: string): string => file.slice(file.lastIndexOf('.so'));
  const libssl = found.libssl;
  found.libcrypto = (libssl !== null ? cryptos.find((c) => suffix(c) === suffix(libssl)) : undefined) ?? cryptos[0] ?? null;
  return found;
}

/**
 * The library's own version text from its bytes, as OpenSSL_version(OPENSSL_VERSION)
 * (SSLeay_version(SSLEAY_VERSION) before 1.1.0) returns it. libcrypto holds it
 * as a string constant in every release since 0.9, and 1.0.2 repeats it in
 * each module's "... part of OpenSSL 1.0.2f  28 Jan 2016" banner:
 * - "OpenSSL 3.0.19 27 Jan 2026", "OpenSSL 1.1.1w  11 Sep 2023",
 *   "OpenSSL 1.0.2f  28 Jan 2016", "OpenSSL 1.0.2k-fips  26 Jan 2017";
 * - LibreSSL's OPENSSL_VERSION_TEXT: "LibreSSL 3.8.2";
 * - BoringSSL's and AWS-LC's: "OpenSSL 1.1.1 (compatible; BoringSSL)".
 * Those other libraries are looked for first: they are not OpenSSL, whatever else their bytes hold.
 */
export function findVersionText(bytes: Buffer): string | null {
  const text = bytes.toString('latin1');
  for (const re of [/OpenSSL \d+\.\d+\.\d+[a-z]* \(compatible; [\w .-]{1,40}\)/, /LibreSSL \d+\.\d+\.\d+/, /OpenSSL \d+\.\d+\.\d+[a-z]*(?:-[\w.]+)? +\d{1,2} \w{3} \d{4}/]) {
    const m = re.exec(text);
    if (m) return m[0];
  }
  return null;
}

/** Keyed by device and inode: one read per library file, whichever path or mount namespace names it. */
const versionCache = new Map<string, string | null>();

/** The version text of a process's mapped file, read through /proc/<pid>/root (so containers' libraries count); null if unreadable. */
export function readVersionText(pid: number, file: string): string | null {
  const seen = `/proc/${pid}/root${file}`;
  let key: string;
  try {
    const st = fs.statSync(seen);
    key = `${st.dev}:${st.ino}`;
  } catch {
    return null; // the process exited, or its root is not ours to read
  }
  let text = versionCache.get(key);
  if (text === undefined) {
    try {
      text = findVersionText(fs.readFileSync(seen));
    } catch {
      text = null;
    }
    versionCache.set(key, text);
  }
  return text;
}
