/**
 * The wall clock (Date.now's, in ms) for what a request reads of it several
 * times: the Date field, the proxy's pooled-connection ages, the upstream's
 * send time (the cache's request_time, RFC 9111 §4.2.3) and its time in the
 * access log. Date.now() is a call into V8's runtime and a new HeapNumber,
 * about 0.4k instructions each under callgrind, five of them per proxied
 * 1 KiB keep-alive GET (bench/request-cost.ts); performance.now() is a fast
 * API call, about 0.05k. So the wall clock is read once per REBASE_MS, and
 * in between it is that reading plus the monotonic clock's time since.
 *
 * Both clocks run at the same rate (Linux slews CLOCK_MONOTONIC with
 * CLOCK_REALTIME: adjtime(3), clock_gettime(2)); only a step of the wall
 * clock (settimeofday, NTP's step, a resumed VM) parts them, and that shows
 * here within REBASE_MS. nginx reads its clock once per event-loop turn
 * (ngx_time_update) for the same reason.
 *
 * `performance` is node:perf_hooks' own: node's global of that name is an
 * accessor on globalThis, and V8 calls its getter on every read of it (about
 * 0.17k instructions per Date field of a 1 KiB hit, bench/request-cost.ts);
 * an import is a binding read like any other.
 */
import { performance } from 'node:perf_hooks';

/** How long a wall-clock reading is carried forward by the monotonic clock. */
const REBASE_MS = 1000;

let wallBase = 0;
let monoBase = 0;
let rebaseAt = -1;

/** Now on the wall clock, in whole ms since the epoch, as Date.now(). */
export function wallNow(): number {
  const mono = performance.now();
  if (mono >= rebaseAt) {
    wallBase = Date.now();
    monoBase = mono;
    rebaseAt = mono + REBASE_MS;
    return wallBase;
  }
  return Math.floor(wallBase + (mono - monoBase));
}

let dateSecond = -1;
let dateText = '';

/** The Date field's value for a response made now (RFC 9110 §6.6.1: IMF-fixdate, to the second). */
export function utcDate(): string {
  const s = Math.floor(wallNow() / 1000);
  if (s !== dateSecond) {
    dateSecond = s;
    dateText = new Date(s * 1000).toUTCString();
  }
  return dateText;
}
