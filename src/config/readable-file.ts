import fs from 'node:fs';

/**
 * Why a file named in the settings cannot be used (null when it can), checked
 * before anything starts so the error names the flag or key rather than
 * surfacing later as an OpenSSL error.
 */
export async function unreadableFileReason(file: string, kind: 'file' | 'directory' = 'file'): Promise<string | null> {
  try {
    // access(R_OK) as well as stat: stat succeeds on a file this user cannot read.
    const st = await fs.promises.stat(file);
    if (kind === 'file' && !st.isFile()) return 'not a regular file';
    if (kind === 'directory' && !st.isDirectory()) return 'not a directory';
    await fs.promises.access(file, kind === 'file' ? fs.constants.R_OK : fs.constants.R_OK | fs.constants.X_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EACCES') return 'permission denied (the user running aludel cannot read it)';
    return (err as Error).message;
  }
}
