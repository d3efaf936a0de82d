/**
 * The --ticket-keys files as the settings check them: nginx's
 * ssl_session_ticket_key format, 80 bytes (or 48, the legacy AES-128 one).
 * tls/ticket-keys.ts reads the keys from them.
 */
import fs from 'node:fs';
import { unreadableFileReason } from './readable-file.js';
import { heldFile } from './held-files.js';

export const TICKET_KEY_BYTES = 80;
export const LEGACY_TICKET_KEY_BYTES = 48;

/** Why a key file cannot be used (null when it can): missing, unreadable, or not 80/48 bytes. */
export async function ticketKeyFileProblem(file: string): Promise<string | null> {
  // A starting worker's copy from its primary (held-files.ts).
  const held = heldFile(file);
  if (held !== undefined) return ticketKeySizeProblem(held.bytes.length);
  const why = await unreadableFileReason(file);
  if (why !== null) return why;
  return ticketKeySizeProblem((await fs.promises.stat(file)).size);
}

/** Why `size` bytes are no session ticket key file (null when they are one). */
export function ticketKeySizeProblem(size: number): string | null {
  if (size === TICKET_KEY_BYTES || size === LEGACY_TICKET_KEY_BYTES) return null;
  return `${size} bytes; a session ticket key file has exactly 80 bytes (or 48, the legacy AES-128 format), e.g. made by: openssl rand 80 > FILE && chmod 600 FILE`;
}
