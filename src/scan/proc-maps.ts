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
  /** The first address range ("7f00-7f01") each OpenSSL library is mapped at: its /proc/<pid>/map_files name. */
  ranges: Record<string, string>;
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
  const found: TlsLibraries = { libssl: null, libcrypto: null, preload: false, aludel: false, otherTls: null, ranges: {} };
  const cryptos: string[] = [];
  for (const line of maps.split('\n')) {
    // address perms offset dev inode pathname: the path is the sixth field and may hold spaces.
    const m = /^([0-9a-f]+-[0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\d+\s+(\/.*?)(?: \(deleted\))?$/.exec(line);
    if (!m) continue;
    const file = m[2]!;
    const base = file.slice(file.lastIndexOf('/') + 1);
    if (base === 'aludel-preload.so') found.preload = true;
    if (base === 'aludel.node') found.aludel = true;
    const other = OTHER_TLS.find(([re]) => re.test(base));
    if (other) found.otherTls ??= `${other[1]} (${base})`;
    const lib = LIB.exec(base);
    if (!lib) continue;
    found.ranges[file] ??= m[1]!;
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

/** At most this much of a library file is read for its version text (libcrypto.so.3 is about 5 MiB). */
const VERSION_READ_MAX = 64 * 1024 * 1024;

/**
 * The version text of a process's mapped library, or null when it cannot be
 * read. `aludel scan` runs as root and the process may be anyone's, so the
 * file is the one the process mapped, not what its path names now:
 * /proc/<pid>/map_files/<range> links to the mapping's own file (proc(5);
 * following it needs CAP_SYS_ADMIN). Through the path, a process in a mount
 * namespace of its own (unprivileged, with a user namespace) could put a FIFO
 * over its library's path, and scan hung on the read for ever (found by
 * testing); a device there would have been opened by root. Without the
 * capability (scan not run as root, so only the user's own processes are
 * seen) the path is read, through /proc/<pid>/root for containers, with the
 * same checks: a regular file, opened without blocking, the same inode
 * before and after the open.
 */
export function readVersionText(pid: number, file: string, range: string | undefined): string | null {
  const mapped = range === undefined ? null : statOrCode(`/proc/${pid}/map_files/${range}`);
  const path = mapped === 'EPERM' || mapped === 'EACCES' || range === undefined ? `/proc/${pid}/root${file}` : `/proc/${pid}/map_files/${range}`;
  const st = path.includes('/map_files/') ? mapped : statOrCode(path);
  if (st === null || typeof st === 'string' || !st.isFile()) return null; // exited, unmapped, not ours, or not a file
  const key = `${st.dev}:${st.ino}`;
  let text = versionCache.get(key);
  if (text === undefined) {
    const bytes = readRegular(path, st);
    text = bytes === null ? null : findVersionText(bytes);
    versionCache.set(key, text);
  }
  return text;
}

/** stat(2) of `path`, or the error's code (null when it has none). */
function statOrCode(path: string): fs.Stats | string | null {
  try {
    return fs.statSync(path);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? null;
  }
}

/**
 * The bytes of `path` if it is still the regular file `expected` (same device
 * and inode) and not over VERSION_READ_MAX; null otherwise. O_NONBLOCK: a
 * FIFO swapped in after the stat cannot block the open or the read.
 */
function readRegular(path: string, expected: fs.Stats): Buffer | null {
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch {
    return null;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.dev !== expected.dev || st.ino !== expected.ino || st.size > VERSION_READ_MAX) return null;
    const bytes = Buffer.allocUnsafe(st.size);
    let n = 0;
    for (let r = 1; n < bytes.length && r > 0; n += r) r = fs.readSync(fd, bytes, n, bytes.length - n, n);
    return bytes.subarray(0, n);
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}
