/**
 * A request's primary cache key (RFC 9111 §2, policy.ts cacheKey) by the
 * request's own strings: a Map per Host value as sent, of the request
 * target as sent, to the key cacheKey made of the two. cacheKey is a pure
 * function of them, so the key found is the one it would make, with every
 * part it includes (the lowercased authority, the target with its path and
 * query); the Vary selection is not part of it (§4.1, HttpCache.select).
 *
 * Why: cacheKey lowercased Host and joined "https://", Host and target per
 * request, and the store's Map then flattened and hashed that joined string
 * to find the key's entries: about 2.4k instructions of a 1 KiB hit
 * (bench/request-cost.ts). Here a hit hashes the Host value and the target,
 * two short strings, and hands the store the key string it hashed before
 * (V8 keeps a string's hash in it), which is the store's own Map key when
 * this process stored the entry: found by pointer.
 *
 * At most KEYS_KEPT keys are kept; past that all are forgotten and kept
 * anew, so a client inventing targets holds no memory and costs one more
 * Map set per request. Only a Host and target of up to KEPT_LENGTH characters
 * each are kept: a request line may be some kilobytes long, and 4096 of them
 * (each with its key) would hold tens of megabytes per worker; a longer one
 * has its key made as before. Kept strings are copies of their own: a Host value
 * or target sliced from a request head (V8 slices strings of 13 characters
 * or more) would keep that head alive with it.
 */
import { cacheKey } from './policy.js';

const KEYS_KEPT = 4096;
const KEPT_LENGTH = 512;

const byHost = new Map<string, Map<string, string>>();
let kept = 0;

/** cacheKey(host, target), from the memo when these two were seen. */
export function requestKey(host: string | undefined, target: string): string {
  // cacheKey reads a missing Host as an empty one.
  const h = host ?? '';
  if (target.length > KEPT_LENGTH || h.length > KEPT_LENGTH) return cacheKey(host, target);
  let targets = byHost.get(h);
  const known = targets?.get(target);
  if (known !== undefined) return known;
  const key = detached(cacheKey(host, target));
  if (kept >= KEYS_KEPT) {
    byHost.clear();
    kept = 0;
    targets = undefined;
  }
  if (targets === undefined) {
    targets = new Map<string, string>();
    byHost.set(detached(h), targets);
  }
  targets.set(detached(target), key);
  kept++;
  return key;
}

/**
 * `s` in a flat string of its own, sharing no parent string, with the same
 * UTF-16 code units: latin1 when every one fits a byte (a lane request's
 * are visible ASCII), else utf16le, which copies them as they are (an
 * HTTP/2 :path or a node-parsed target could hold others, and a lossy copy
 * could make two targets one key).
 */
function detached(s: string): string {
  const encoding = WIDE.test(s) ? 'utf16le' : 'latin1';
  return Buffer.from(s, encoding).toString(encoding);
}

const WIDE = /[\u0100-\uffff]/;

/** How many keys the memo holds now (tests). */
export function keysKept(): number {
  return kept;
}
