/**
 * Maps a request-target onto a regular file under the document root without
 * ever letting the request escape that root.
 *
 * Defence is layered on purpose: the path is percent-decoded, then its dot
 * segments are removed (RFC 3986 §5.2.4) and empty ones merged, as nginx
 * normalises a URI (ngx_http_parse_complex_uri, merge_slashes on), so
 * "/sub/../index.html" and "/sub/%2e%2e/index.html" name "/index.html"; a
 * ".." that would climb above the root is refused (400, as nginx answers it),
 * so the segments joined to the root never leave it. The final location is
 * then realpath'ed (or opened with openat2 RESOLVE_BENEATH) and checked
 * against the root, so symlinks leading outside the root are refused too.
 */
import fs, { promises as fsp, type Stats } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { statFromSlots, type FileStat } from './file-stat.js';
import { FILE_SLOTS, type OpenFiles } from './open-files.js';
import { closeQuietly } from '../transport/close-quietly.js';

export type ResolveResult =
  /** path: a Buffer where the request named bytes that are not UTF-8 (NormalPath.bytes). */
  | { kind: 'file'; path: string | Buffer; stat: Stats }
  | { kind: 'not-found' }
  | { kind: 'forbidden' }
  | { kind: 'bad-request' }
  | { kind: 'redirect'; location: string };

const NOT_FOUND = { kind: 'not-found' } as const;
const FORBIDDEN = { kind: 'forbidden' } as const;
const BAD_REQUEST = { kind: 'bad-request' } as const;

const INDEX_FILE = 'index.html';

/** Errors meaning "there is nothing at this path" rather than a server fault. */
const MISSING_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG']);

export type Refused = Exclude<ResolveResult, { kind: 'file' }>;

/** A request path after decoding and remove_dot_segments: what it names beneath the root. */
interface NormalPath {
  /** Decoded segments, none empty, "." or "..": joined to the root they cannot climb above it. */
  segments: string[];
  /** Whether the normalised path ends in "/" (it names a directory's index). */
  slash: boolean;
  /** Whether the raw path was already normal (one leading slash, no empty or dot segment, no %2F). */
  asSent: boolean;
  /**
   * Whether the decoded bytes are not UTF-8: the segments are then latin1
   * strings, one character per byte (percentDecode), and name the file by
   * those bytes, as nginx does (a tree of Latin-1 file names, "/caf%E9.txt").
   */
  bytes: boolean;
}

/**
 * The normalised path of a request-target (RFC 3986 §5.2.4 remove_dot_segments
 * on the decoded segments, empty ones merged as nginx's merge_slashes), or why
 * there is none: 400 for a malformed escape, a NUL, a target that names no
 * path, or a ".." above the root (nginx answers "/../x" 400 too, rather than
 * clamping it to "/x" as §5.2.4 would for a reference).
 */
function normalPath(urlPath: string): NormalPath | Refused {
  const rawPath = extractPath(urlPath);
  if (rawPath === undefined) return BAD_REQUEST;

  let decoded = percentDecode(rawPath);
  let bytes = false;
  if (decoded === undefined) {
    decoded = percentDecodeBytes(rawPath);
    bytes = true;
  }
  if (decoded === undefined || decoded.includes('\0')) return BAD_REQUEST;

  const segments: string[] = [];
  const parts = decoded.split('/');
  let asSent = parts.length === rawPath.split('/').length; // no %2F became a separator
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === '..') {
      if (segments.pop() === undefined) return BAD_REQUEST;
    } else if (part !== '' && part !== '.') {
      segments.push(part);
      continue;
    }
    // A trailing empty segment is the slash of a directory, as sent.
    if (part !== '' || i < parts.length - 1) asSent = false;
  }
  const last = parts[parts.length - 1]!;
  return { segments, slash: parts.length > 1 && (last === '' || last === '.' || last === '..'), asSent, bytes };
}

export async function resolveUnderRoot(rootReal: string, urlPath: string): Promise<ResolveResult> {
  const p = normalPath(urlPath);
  if ('kind' in p) return p;

  if (p.bytes) return resolveBytes(rootReal, p, urlPath);
  // path.join on ..-free segments cannot climb above rootReal.
  const candidate = path.join(rootReal, ...p.segments);
  const found = await realStat(rootReal, candidate);
  // A path ending in a slash names a directory: a file there is not found, as open(2) of
  // "file/" fails with ENOTDIR and nginx answers 404, never the file under a second name.
  if (found.kind === 'file' && !found.stat.isDirectory() && p.slash) return NOT_FOUND;
  if (found.kind !== 'file' || !found.stat.isDirectory()) return onlyRegular(found);
  // A directory named without its trailing slash is sent there (301), as nginx does: its
  // index's relative links resolve against the directory itself only then (RFC 3986 §5.2).
  if (!p.slash) return { kind: 'redirect', location: directoryLocation(p, urlPath) };

  // No directory listings: a directory is served only through its index file.
  return indexOf(await realStat(rootReal, path.join(found.path, INDEX_FILE)));
}

/**
 * A directory's index, as found: a directory without one is 403, as nginx
 * answers it without autoindex ("directory index of ... is forbidden",
 * ngx_http_index_module declining to the static module, which refuses a URI
 * ending in "/"): the directory is there, its listing is not given.
 */
function indexOf(found: ResolveResult): ResolveResult {
  return found.kind === 'not-found' ? FORBIDDEN : onlyRegular(found);
}

/**
 * Where a directory named without its trailing slash lives: the path as
 * sent when it was already normal, else the normalised one (as nginx's
 * Location is its normalised URI), each segment percent-encoded again; one
 * leading slash (so "//host" can never become a network-path reference to
 * another host, RFC 3986 §4.2), the slash added, the query kept.
 */
function directoryLocation(p: NormalPath, target: string): string {
  const q = target.indexOf('?');
  const query = q >= 0 ? target.slice(q).split('#')[0]! : '';
  const where = p.asSent ? extractPath(target)!.slice(1) : p.segments.map(p.bytes ? encodeBytes : encodeURIComponent).join('/');
  return `/${where}/${query}`;
}

/**
 * Returns the path component of a request-target (RFC 9110 §7.1, RFC 9112
 * §3.2): origin-form "/p?q" or absolute-form "http://host/p?q". Query and
 * fragment are not part of the file name. Other forms (`*`, authority-form)
 * never name a file.
 */
function extractPath(target: string): string | undefined {
  let start = 0;
  if (!target.startsWith('/')) {
    const schemeEnd = target.indexOf('://');
    if (schemeEnd <= 0) return undefined;
    start = target.indexOf('/', schemeEnd + 3);
    if (start < 0) return '/';
  }
  let end = target.length;
  const query = target.indexOf('?', start);
  if (query >= 0) end = query;
  const fragment = target.indexOf('#', start);
  if (fragment >= 0 && fragment < end) end = fragment;
  return target.slice(start, end);
}

/** undefined for malformed escapes or escapes that are not valid UTF-8. */
function percentDecode(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** A "%" not followed by two hex digits (RFC 3986 §2.1). */
const MALFORMED_ESCAPE = /%(?![0-9A-Fa-f]{2})/;

/**
 * The bytes of a path whose escapes are well formed but not UTF-8, as a
 * latin1 string (one character per byte), or undefined for a malformed
 * escape. nginx decodes escapes to bytes and opens the file by them
 * (ngx_http_parse_complex_uri): a file named in Latin-1 is served, where
 * decodeURIComponent refuses the escape.
 */
function percentDecodeBytes(raw: string): string | undefined {
  if (MALFORMED_ESCAPE.test(raw)) return undefined;
  return raw.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** A latin1 segment of a bytes path percent-encoded again: unreserved characters as they are (RFC 3986 §2.3), every other byte escaped. */
function encodeBytes(segment: string): string {
  let out = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    out += UNRESERVED.test(segment[i]!) ? segment[i] : `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
const UNRESERVED = /^[A-Za-z0-9._~-]$/;

/**
 * resolveUnderRoot for a path of bytes that are not UTF-8: the same steps on
 * Buffer paths (node encodes a string path as UTF-8, which would name other
 * bytes). Only the realpath way: openUnderRoot sends these here.
 */
async function resolveBytes(rootReal: string, p: NormalPath, target: string): Promise<ResolveResult> {
  const root = Buffer.from(rootReal);
  const join = (base: Buffer, rest: string): Buffer => Buffer.concat([base, base[base.length - 1] === 0x2f ? Buffer.alloc(0) : Buffer.from('/'), Buffer.from(rest, 'latin1')]);
  const found = await realStatBytes(root, join(root, p.segments.join('/')));
  if (found.kind === 'file' && !found.stat.isDirectory() && p.slash) return NOT_FOUND;
  if (found.kind !== 'file' || !found.stat.isDirectory()) return onlyRegular(found);
  if (!p.slash) return { kind: 'redirect', location: directoryLocation(p, target) };
  return indexOf(await realStatBytes(root, join(found.path, INDEX_FILE)));
}

/** realStat on Buffer paths. */
async function realStatBytes(root: Buffer, candidate: Buffer): Promise<{ kind: 'file'; path: Buffer; stat: Stats } | Refused> {
  try {
    const real = await fsp.realpath(candidate, { encoding: 'buffer' });
    if (!isWithinBytes(root, real)) return FORBIDDEN;
    return { kind: 'file', path: real, stat: await fsp.stat(real) };
  } catch (err) {
    return classifyFsError(err);
  }
}

function isWithinBytes(root: Buffer, real: Buffer): boolean {
  if (real.equals(root)) return true;
  const n = root[root.length - 1] === 0x2f ? root.length : root.length + 1;
  return real.length > n && real.subarray(0, root.length).equals(root) && (n === root.length || real[root.length] === 0x2f);
}

/** realpath + containment check + stat; the returned path is the real one. */
async function realStat(rootReal: string, candidate: string): Promise<{ kind: 'file'; path: string; stat: Stats } | Refused> {
  try {
    const real = await fsp.realpath(candidate);
    if (!isWithin(rootReal, real)) return FORBIDDEN;
    return { kind: 'file', path: real, stat: await fsp.stat(real) };
  } catch (err) {
    return classifyFsError(err);
  }
}

export function isWithin(rootReal: string, real: string): boolean {
  if (real === rootReal) return true;
  // Compare with a trailing separator so "/srv/www-evil" is not "inside" "/srv/www".
  const prefix = rootReal.endsWith(path.sep) ? rootReal : rootReal + path.sep;
  return real.startsWith(prefix);
}

function classifyFsError(err: unknown): Refused {
  const code = errorCode(err);
  if (code !== undefined && MISSING_CODES.has(code)) return NOT_FOUND;
  if (code === 'EACCES' || code === 'EPERM') return FORBIDDEN;
  throw err;
}

/** Sockets, FIFOs, devices and leftover directories are never served. */
function onlyRegular(result: ResolveResult): ResolveResult {
  if (result.kind === 'file' && !result.stat.isFile()) return NOT_FOUND;
  return result;
}

export function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  const code = (err as { code: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * openat2(2) of a path relative to the root directory (the addon's
 * openBeneath, bound to the root's fd): an fd, or -errno. With `fstats`, the
 * opener also fstat'ed the fd it returned and wrote it there (the addon's
 * openBeneathStat, file-stat.ts); without, openUnderRoot asks fs.fstatSync.
 */
export type OpenBeneath = ((relative: string) => number) & { readonly fstats?: Float64Array };

const E = os.constants.errno;

/**
 * An origin-form target of plain segments: unreserved characters only (RFC
 * 3986 §2.3), none starting with a dot, so no "." or ".." and no percent
 * escape, query or fragment. Its path beneath the root is itself without
 * the leading slash: what normalPath and the join make of it, without the
 * decoding, the split and the arrays.
 */
const PLAIN_TARGET = /^(?:\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$/;

/** The last PLAIN_TARGET relativePath saw, and its path beneath the root: relativePath is a function of the target alone. */
let lastPlainTarget: string | undefined;
let lastPlainRelative = '';

/**
 * The decoded path beneath the root ("" for the root itself), or why there
 * is none; null for a path ending in a slash, which names a directory (its
 * index) and never a file, or for bytes that are not UTF-8 (resolveUnderRoot
 * decides both).
 */
function relativePath(urlPath: string): string | Refused | null {
  // The target asked for last time, asked for again (a keep-alive client fetching one file): its
  // path is the same string as then, already hashed as the key of the kept descriptor and
  // validators, where the test and slice made a new one to hash and compare each time (about
  // 0.8k instructions per 1 KiB keep-alive GET, bench/request-cost.ts).
  if (urlPath === lastPlainTarget) return lastPlainRelative;
  if (PLAIN_TARGET.test(urlPath)) {
    lastPlainTarget = urlPath;
    lastPlainRelative = urlPath.slice(1);
    return lastPlainRelative;
  }
  const p = normalPath(urlPath);
  if ('kind' in p) return p;
  // A path of bytes that are not UTF-8 goes the realpath way, on Buffer paths (resolveBytes).
  return p.slash || p.bytes ? null : p.segments.join('/');
}

/** A regular file opened beneath the root: release it with closeOpened(). Not to be changed (a kept one's is shared: open-files.ts KeptFile). */
export interface OpenedUnderRoot {
  readonly kind: 'open';
  readonly fd: number;
  readonly path: string;
  readonly stat: FileStat;
  /** Its path beneath the root, the key of a kept descriptor. */
  readonly relative: string;
}

/** relative has no empty, "." or ".." segment: joined as path.join would, without its normalising pass. */
function underRoot(rootReal: string, relative: string): string {
  return rootReal === path.sep ? rootReal + relative : rootReal + path.sep + relative;
}

/** A response is done with a descriptor openUnderRoot gave: kept for the next request (files), or closed. */
export function closeOpened(files: OpenFiles | undefined, relative: string, fd: number): void {
  if (files !== undefined) files.release(relative, fd);
  else closeQuietly(fd);
}

/**
 * The fast way to a regular file under the root, where the kernel has
 * openat2(2): one open whose resolution the kernel keeps beneath the root
 * (RESOLVE_BENEATH: no "..", absolute path or symlink leads out), then
 * fstat, both inline as nginx's open and fstat are, where resolveUnderRoot
 * makes two thread-pool round trips (realpath, stat) before the open.
 * 'fallback' sends the request the slow way, which decides with realpath:
 * directories (index files), anything the kernel refused to resolve beneath
 * (EXDEV: an absolute symlink may still point inside the root), no openat2.
 */
export function openUnderRoot(open: OpenBeneath, rootReal: string, urlPath: string, files?: OpenFiles): OpenedUnderRoot | Refused | 'fallback' {
  const relative = relativePath(urlPath);
  if (relative === null || relative === '') return 'fallback';
  if (typeof relative !== 'string') return relative;
  // A descriptor kept from an earlier request, if the path still names its file unchanged (open-files.ts).
  const found = files?.find(relative);
  if (found !== undefined) {
    // Kept with its path (below): handed on as it is, the same object each time (open-files.ts KeptFile).
    if (found.path !== undefined) return found as OpenedUnderRoot;
    return { kind: 'open', fd: found.fd, path: underRoot(rootReal, relative), stat: found.stat, relative };
  }
  let fd: number;
  try {
    fd = open(relative);
  } catch {
    return NOT_FOUND; // longer than PATH_MAX: nothing can be there
  }
  if (fd < 0) {
    if (fd === -E.ENOENT || fd === -E.ENOTDIR || fd === -E.ENAMETOOLONG) return NOT_FOUND;
    if (fd === -E.EACCES || fd === -E.EPERM) return FORBIDDEN;
    return 'fallback';
  }
  let stat: FileStat;
  if (open.fstats !== undefined) {
    stat = statFromSlots(open.fstats);
  } else {
    try {
      stat = fs.fstatSync(fd);
    } catch {
      fs.closeSync(fd);
      return 'fallback';
    }
  }
  if (stat.isFile()) {
    const file = underRoot(rootReal, relative);
    // Kept only with the opener's slots: ctime is what tells a later chmod (open-files.ts).
    if (files !== undefined && open.fstats !== undefined && open.fstats.length >= FILE_SLOTS) files.keep(relative, fd, stat, open.fstats, file);
    return { kind: 'open', fd, path: file, stat, relative };
  }
  fs.closeSync(fd);
  // No directory listings; directories go the slow way for their index file.
  return stat.isDirectory() ? 'fallback' : NOT_FOUND;
}
