/**
 * Targeted cache-control fields (RFC 9213): `CDN-Cache-Control`, and the
 * field an admin names with --targeted-cache-control, e.g.
 * `Aludel-Cache-Control`. Pure.
 *
 * - §2.1: the cache keeps a target list, most specific first (the
 *   configured field, then CDN-Cache-Control: Aludel terminates TLS in
 *   front of the origin, the place of a CDN). The first field on it with a
 *   valid, non-empty value gives the cache's directives, and Cache-Control
 *   and Expires are then ignored for the cache's own decisions. With none,
 *   the cache falls back to Cache-Control, response by response.
 * - §2.2: a targeted field is a Dictionary (RFC 8941); one that fails to
 *   parse is ignored, as if absent. So `Max-Age=60` (keys are lowercase in
 *   RFC 8941 §3.2) is no directive at all.
 * - The directives mean what they mean in Cache-Control (§2.1), so they are
 *   handed to the same rules as a Cache-Control map (cache-control.ts).
 * - Aludel consumes the fields on its list: they are not forwarded to the
 *   client, whose own caches are not their target.
 */
import type { Headers } from './policy.js';
import type { Directives } from './cache-control.js';
import { parseDictionary, type BareItem, type InnerList, type Item } from '../http/structured-field.js';

/** Lowercase field names, most specific first. */
export type Targets = readonly string[];

/** RFC 9213 §3: the field targeted at CDN caches, always on Aludel's list. */
export const CDN_CACHE_CONTROL = 'cdn-cache-control';

/** The target list without --targeted-cache-control. */
export const DEFAULT_TARGETS: Targets = [CDN_CACHE_CONTROL];

/** §2.1: the configured field (more specific) before CDN-Cache-Control. */
export function targetList(configured: string | null): Targets {
  return configured === null ? DEFAULT_TARGETS : [configured.toLowerCase(), CDN_CACHE_CONTROL];
}

/**
 * The directives of the first field on the list with a valid, non-empty
 * value (§2.1), and its name; null when none has one.
 */
export function targetedDirectives(headers: Headers, targets: Targets): { field: string; directives: Directives } | null {
  for (const field of targets) {
    // Most responses carry no targeted field: nothing is allocated for them.
    let values: string[] | null = null;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (headers[i]!.toLowerCase() === field) (values ??= []).push(headers[i + 1]!);
    }
    if (values === null) continue;
    const dict = parseDictionary(values);
    if (dict === null || dict.size === 0) continue;
    const directives = new Map<string, string | null>();
    for (const [name, member] of dict) {
      const arg = argument(member);
      // `no-store=?0` says "not no-store": RFC 8941 §3.3.6 false, so the directive is absent.
      if (arg !== false) directives.set(name, arg);
    }
    return { field, directives };
  }
  return null;
}

/**
 * A member as a Cache-Control argument: true -> no argument (null), false ->
 * absent, numbers and strings as text, an inner list of field names (for a
 * qualified private / no-cache) joined with commas. A byte sequence is no
 * argument any directive takes: it becomes '', which every reader of an
 * argument treats as invalid (e.g. max-age then means already stale).
 */
function argument(member: Item | InnerList): string | null | false {
  if ('items' in member) return member.items.map((i) => text(i.value)).join(', ');
  const v = member.value;
  if (v === true) return null;
  if (v === false) return false;
  return text(v);
}

function text(v: BareItem): string {
  if (typeof v === 'number' || typeof v === 'string') return String(v);
  if (typeof v === 'boolean') return '';
  return 'token' in v ? v.token : '';
}
