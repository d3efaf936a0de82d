/**
 * What `aludel run` can tell about a program before starting it: the cases
 * where the preload is never loaded or never reached, so that it would
 * write no line at all and the user could not tell that kTLS is off:
 * - a set-user-ID or set-group-ID program that changes the user: the
 *   dynamic linker runs it in secure-execution mode and ignores LD_PRELOAD
 *   (ld.so(8), AT_SECURE);
 * - a statically linked program: no dynamic linker (no PT_INTERP), so no
 *   preload;
 * - a program that links neither libssl nor libcrypto (DT_NEEDED): its TLS,
 *   if any, is linked in (nginx built `--with-openssl=DIR`), unless it loads
 *   a shared OpenSSL later (a module, dlopen), which the preload then hooks.
 * The ELF reading is pure (elfLinking); the rest looks at the file.
 */
import fs from 'node:fs';
import path from 'node:path';

/** The dynamic-linking facts of an ELF64 little-endian file, or null when it is not one (a script, another format). */
export interface ElfLinking {
  /** PT_INTERP: started by the dynamic linker (a dynamically linked program). */
  interp: boolean;
  /** DT_NEEDED sonames, in order. */
  needed: string[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;

interface Segment {
  type: number;
  offset: number;
  vaddr: number;
  filesz: number;
}

/** The program headers of an ELF64 little-endian file (System V gABI, "Program Header"), or null. */
function segments(b: Buffer): Segment[] | null {
  // e_ident: magic, EI_CLASS 2 (64-bit), EI_DATA 1 (little-endian): x86-64 and arm64 Linux.
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return null;
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  if (phentsize < 56 || phoff + phnum * phentsize > b.length) return null;
  const out: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    out.push({ type: b.readUInt32LE(at), offset: Number(b.readBigUInt64LE(at + 0x08)), vaddr: Number(b.readBigUInt64LE(at + 0x10)), filesz: Number(b.readBigUInt64LE(at + 0x20)) });
  }
  return out;
}

/** The file offset of a virtual address, through the PT_LOAD segment holding it (DT_STRTAB is an address). */
function fileOffset(loads: readonly Segment[], vaddr: number): number | null {
  const s = loads.find((l) => vaddr >= l.vaddr && vaddr < l.vaddr + l.filesz);
  return s === undefined ? null : vaddr - s.vaddr + s.offset;
}

/** The NUL-terminated string at `at`, or null past the end. */
function cString(b: Buffer, at: number): string | null {
  const end = b.indexOf(0, at);
  return at >= b.length || end < 0 ? null : b.toString('latin1', at, end);
}

export function elfLinking(b: Buffer): ElfLinking | null {
  const segs = segments(b);
  if (segs === null) return null;
  const interp = segs.some((s) => s.type === PT_INTERP);
  const dyn = segs.find((s) => s.type === PT_DYNAMIC);
  if (dyn === undefined || dyn.offset + dyn.filesz > b.length) return { interp, needed: [] };
  const offsets: bigint[] = [];
  let strtab: number | null = null;
  for (let at = dyn.offset; at + 16 <= dyn.offset + dyn.filesz; at += 16) {
    const tag = b.readBigInt64LE(at);
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) offsets.push(b.readBigUInt64LE(at + 8));
    else if (tag === DT_STRTAB) strtab = fileOffset(segs.filter((s) => s.type === PT_LOAD), Number(b.readBigUInt64LE(at + 8)));
  }
  if (strtab === null) return { interp, needed: [] };
  const base = strtab;
  return { interp, needed: offsets.map((o) => cString(b, base + Number(o))).filter((n): n is string => n !== null) };
}

/** What a program's file says about the preload: a warning for each case above, none when it should load and be reached. */
export function linkingWarnings(name: string, st: Pick<fs.Stats, 'mode' | 'uid' | 'gid'>, linking: ElfLinking | null, ids: { uid: number; gid: number }): string[] {
  const out: string[] = [];
  const setuid = (st.mode & 0o4000) !== 0 && st.uid !== ids.uid;
  const setgid = (st.mode & 0o2000) !== 0 && st.gid !== ids.gid;
  if (setuid || setgid) {
    out.push(`${name} is set-${setuid ? 'user' : 'group'}-ID: the dynamic linker ignores LD_PRELOAD for it (secure-execution mode, ld.so(8)), so the preload never loads and its TLS stays in user space; use aludel proxy or aludel tcp in front of it`);
  }
  if (linking === null) return out;
  if (!linking.interp) {
    out.push(`${name} is statically linked: LD_PRELOAD needs the dynamic linker, so the preload never loads; use aludel proxy or aludel tcp in front of it`);
  } else if (!linking.needed.some((n) => /^lib(ssl|crypto)\.so(\.|$)/.test(n))) {
    out.push(`${name} links neither libssl nor libcrypto (${linking.needed.join(', ') || 'no libraries'}): if its TLS is linked in (nginx built --with-openssl), the preload is never reached and writes no line; if it loads a shared OpenSSL later (a module, dlopen), the preload takes it then`);
  }
  return out;
}

/** The file `command` runs, as execvp(3) finds it: a name with a slash as it is, else the first executable in PATH. */
export function resolveProgram(command: string, pathVar: string | undefined): string | null {
  if (command.includes('/')) return command;
  for (const dir of (pathVar ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const file = path.join(dir || '.', command);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // Not here.
    }
  }
  return null;
}

/** Largest program file read whole for its headers (ELF headers and .dynamic are near the start; a big binary is still read once). */
const READ_MAX = 512 * 1024 * 1024;

/** The warnings for the program `command` would start; none when it cannot be read (spawn reports what is wrong). */
export function programWarnings(command: string, env: NodeJS.ProcessEnv): string[] {
  const file = resolveProgram(command, env.PATH);
  if (file === null) return [];
  try {
    const st = fs.statSync(file);
    if (!st.isFile() || st.size > READ_MAX) return [];
    return linkingWarnings(command, st, elfLinking(fs.readFileSync(file)), { uid: process.getuid?.() ?? -1, gid: process.getgid?.() ?? -1 });
  } catch {
    return [];
  }
}
