/**
 * wrk's results, taken from a Lua `done()` hook that prints one JSON line
 * rather than from wrk's human summary, whose byte counts are rounded
 * ("3.00GB read") and whose percentiles carry unit suffixes.
 */

/** Marks the JSON line among wrk's own output. */
export const WRK_MARKER = 'ALUDEL_BENCH_WRK ';

/**
 * wrk (Debian 4.1) calls done(summary, latency, requests) once after the run;
 * latency values are microseconds, summary.duration too.
 */
export const WRK_SCRIPT = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '${WRK_MARKER}{"durationUs":%d,"requests":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"mean":%.1f,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"max":%d}}\\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(75), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

export interface WrkResult {
  durationS: number;
  requests: number;
  /** Response bytes read, heads included. */
  bytes: number;
  /** connect + read + write + non-2xx/3xx status + timeout. */
  errors: number;
  requestsPerSec: number;
  bytesPerSec: number;
  /** null when no request completed within the run (64 connections on a 10 MiB file in a short point): wrk then has no latencies. */
  latencyMs: { mean: number; p50: number; p75: number; p90: number; p99: number; max: number } | null;
}

interface RawWrk {
  durationUs: number;
  requests: number;
  bytes: number;
  errors: Record<'connect' | 'read' | 'write' | 'status' | 'timeout', number>;
  latencyUs: Record<'mean' | 'p50' | 'p75' | 'p90' | 'p99' | 'max', number>;
}

/** The marked line of wrk's stdout; throws with the output when there is none (wrk failed before done()). */
export function parseWrkOutput(stdout: string): WrkResult {
  const line = stdout.split('\n').find((l) => l.startsWith(WRK_MARKER));
  if (!line) throw new Error(`wrk printed no result line (did it fail to connect?):\n${stdout}`);
  const raw = JSON.parse(line.slice(WRK_MARKER.length)) as RawWrk;
  const durationS = raw.durationUs / 1e6;
  if (!(durationS > 0)) throw new Error(`wrk reported a duration of ${raw.durationUs} µs`);
  const ms = (us: number): number => us / 1000;
  const e = raw.errors;
  return {
    durationS,
    requests: raw.requests,
    bytes: raw.bytes,
    errors: e.connect + e.read + e.write + e.status + e.timeout,
    requestsPerSec: raw.requests / durationS,
    bytesPerSec: raw.bytes / durationS,
    latencyMs: raw.requests === 0 ? null : {
      mean: ms(raw.latencyUs.mean),
      p50: ms(raw.latencyUs.p50),
      p75: ms(raw.latencyUs.p75),
      p90: ms(raw.latencyUs.p90),
      p99: ms(raw.latencyUs.p99),
      max: ms(raw.latencyUs.max),
    },
  };
}
