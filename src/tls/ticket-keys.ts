/**
 * Session ticket keys (RFC 5077 for TLS 1.2, RFC 8446 §4.6.1 for TLS 1.3):
 * the key files of --ticket-keys, in nginx's ssl_session_ticket_key format,
 * and the keys the primary makes for its workers. A key shared by every
 * process behind an address lets a client resume on whichever process the
 * kernel hands its next connection to.
 *
 * Canonical form, used everywhere after reading: name (16) | HMAC secret |
 * AES key, 80 bytes (32 + 32: AES-256-CBC, HMAC-SHA256) or 48 bytes (16 + 16:
 * AES-128-CBC). nginx's 80-byte files are already in that order; its 48-byte
 * files are name | AES key | HMAC secret (ngx_ssl_session_ticket_keys), so
 * they are reordered here. native/tickets.c uses keys in canonical form.
 */
import { randomBytes } from 'node:crypto';
import { InvalidOptionError } from '../errors.js';
import { exposedMode, readSmallRegularFileWithModeSync } from '../config/readable-file.js';
import { LEGACY_TICKET_KEY_BYTES, TICKET_KEY_BYTES, ticketKeySizeProblem } from '../config/ticket-key-file.js';
import type { Logger } from '../log/logger.js';

const NAME = 16;

/** Read at most this much of a key file: enough to say how big a wrong one is, never a huge one whole. */
const MAX_KEY_FILE_READ = 4096;

/** A key file's bytes in canonical form; throws InvalidOptionError naming the file when the size is wrong. */
export function parseTicketKey(bytes: Buffer, file: string): Buffer {
  const problem = ticketKeySizeProblem(bytes.length);
  if (problem !== null) throw new InvalidOptionError(`--ticket-keys: ${file}: ${problem}`);
  if (bytes.length === TICKET_KEY_BYTES) return Buffer.from(bytes);
  // nginx 48-byte layout: name | AES-128 key | HMAC secret.
  return Buffer.concat([bytes.subarray(0, NAME), bytes.subarray(32, 48), bytes.subarray(NAME, 32)]);
}

/**
 * Reads the files of --ticket-keys, in order (the first encrypts). Synchronous:
 * run at start-up and on a reload, as the certificates are. Throws
 * InvalidOptionError naming the file; warns once per file readable by group
 * or others (nginx does not check; the key is as secret as a private key).
 */
export function readTicketKeyFiles(files: readonly string[], log: Logger): Buffer[] {
  return files.map((file) => {
    let read: { bytes: Buffer; mode: number };
    try {
      // Not open(2) then read whole: a FIFO swapped in after the settings check blocked this synchronous open for ever.
      read = readSmallRegularFileWithModeSync(file, MAX_KEY_FILE_READ);
    } catch (err) {
      throw new InvalidOptionError(`--ticket-keys: ${file}: ${(err as Error).message}`);
    }
    if (exposedMode(read.mode)) {
      log.warn({ file }, '--ticket-keys: the key file is readable by group or other users; whoever reads it can decrypt resumed sessions: chmod 600 it');
    }
    return parseTicketKey(read.bytes, file);
  });
}

/** A fresh 80-byte key (random name, HMAC secret and AES-256 key), as the primary makes them. */
export function generateTicketKey(): Buffer {
  return randomBytes(TICKET_KEY_BYTES);
}

/**
 * node:tls (the fallback engine) takes one 48-byte key in its own order, name |
 * HMAC secret | AES-128 key (TLSWrap's ticket key callback), which is the
 * canonical 48-byte form. An 80-byte key gives its first 16 bytes of each
 * secret: deterministic, so processes sharing a key file on this engine still
 * resume each other's sessions, though not those of the system OpenSSL engine.
 */
export function nodeTlsTicketKey(key: Buffer): Buffer {
  if (key.length === LEGACY_TICKET_KEY_BYTES) return key;
  return Buffer.concat([key.subarray(0, NAME), key.subarray(NAME, NAME + 16), key.subarray(48, 64)]);
}

/** How often the primary makes a new key; the previous one still decrypts for as long again. */
export const TICKET_KEY_ROTATION_MS = 12 * 60 * 60 * 1000;

/**
 * The primary's ring: [current, previous]. A ticket lives at most one
 * rotation period under the current key plus one under the previous, so
 * forward secrecy of resumed sessions is bounded by two periods (24 h), the
 * bound RFC 8446 §4.6.1 sets on ticket lifetime (7 days) being far above it.
 */
export function rotateTicketKeys(ring: readonly Buffer[], fresh: Buffer): Buffer[] {
  return [fresh, ...ring.slice(0, 1)];
}
