/**
 * Which OpenSSL a running process uses, from its memory map: the libssl and
 * libcrypto files the dynamic linker mapped (/proc/<pid>/maps), and their
 * version. A program with OpenSSL linked in statically (node, Go's crypto/tls)
 * maps neither, so its TLS library is "not visible" from outside.
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
}

const LIB = /^lib(ssl|crypto)\.so(\.\d+)*$/;

/** The libssl/libcrypto paths in a maps text; "(deleted)" (upgraded under a running process) is kept off the path. */
export function parseTlsLibraries(maps: string): TlsLibraries {
  const found: TlsLibraries = { libssl: null, libcrypto: null, preload: false, aludel: false };
  for (const line of maps.split('\n')) {
    // address perms offset dev inode pathname: the path is the sixth field and may hold spaces.
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+\d+\s+(\/.*?)(?: \(deleted\))?$/.exec(line);
    if (!m) continue;
    const file = m[1]!;
    const base = file.slice(file.lastIndexOf('/') + 1);
    if (base === 'aludel-preload.so') found.preload = true;
    if (base === 'aludel.node') found.aludel = true;
    const lib = LIB.exec(base);
    if (!lib) continue;
    if (lib[1] === 'ssl') found.libssl ??= file;
    else found.libcrypto ??= file;
  }
  return found;
}

/** "libssl.so.3" -> "3", "libssl.so.1.1" -> "1.1", "libssl.so" -> null. */
export function sonameVersion(file: string): string | null {
  const m = /\.so\.(\d+(?:\.\d+)*)$/.exec(file);
  return m ? m[1]! : null;
}

/**
 * OpenSSL's own version text ("OpenSSL 3.0.22 25 Aug 2026", as
 * OpenSSL_version(OPENSSL_VERSION) returns it) from the library's bytes.
 * libcrypto holds it as a string constant in every release since 0.9.
 */
export function findVersionText(bytes: Buffer): string | null {
  const m = /OpenSSL (\d+\.\d+\.\d+[a-z]*)(?:-[\w.]+)? +\d{1,2} \w{3} \d{4}/.exec(bytes.toString('latin1'));
  return m ? m[0] : null;
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
