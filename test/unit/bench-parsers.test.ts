import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { parseOpensslSpeed } from '../../bench/crypto-floor.js';
import { energyJoules } from '../../bench/energy.js';
import { parseOpenFilesLimit } from '../../bench/idle-clients.js';
import { clockTicksPerSecond, cpuSeconds, parseChildTicks, parseProcStat } from '../../bench/proc-cpu.js';
import { counterDelta, cpuPerGB, floorCpuPerGB, ktlsProven, median, ratio } from '../../bench/ratios.js';
import { roundRatios } from '../../bench/report.js';
import { parseWrkOutput, WRK_MARKER } from '../../bench/wrk-output.js';

describe('bench: /proc/<pid>/stat', () => {
  test('utime and stime are fields 14 and 15, counted from the last ")" of comm', () => {
    // comm may hold spaces and parentheses (prctl PR_SET_NAME): naive splitting would shift every field.
    const line = '4242 (a) b (c) d) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 567 0 0 20 0 3 0 100 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n';
    assert.deepEqual(parseProcStat(line), { utime: 1234, stime: 567 });
  });

  test('a truncated line is refused, not read as zero', () => {
    assert.throws(() => parseProcStat('4242 (x) S 1 2 3'), /no utime\/stime/);
    assert.throws(() => parseProcStat(''), /not a \/proc/);
  });

  test('this process: parsing its real stat line and burning CPU raises the count', () => {
    const hz = clockTicksPerSecond();
    assert.ok(hz >= 100, `CLK_TCK ${hz}`);
    const { utime, stime } = parseProcStat(fs.readFileSync('/proc/self/stat', 'utf8'));
    assert.ok(utime + stime > 0);
    // Burn 300 ms of CPU as getrusage(2) counts it (not wall time: the machine may be loaded), then compare.
    const before = cpuSeconds([process.pid], hz);
    const start = process.cpuUsage();
    let x = 0;
    for (;;) {
      const u = process.cpuUsage(start);
      if (u.user + u.system >= 300_000) break;
      for (let i = 0; i < 1e5; i++) x += Math.sqrt(x + i);
    }
    const rusage = process.cpuUsage(start);
    const used = cpuSeconds([process.pid], hz) - before;
    // Ticks are 1/CLK_TCK s and the two counts are taken a moment apart.
    assert.ok(Math.abs(used - (rusage.user + rusage.system) / 1e6) < 0.05, `/proc counted ${used} s, getrusage ${(rusage.user + rusage.system) / 1e6} s (x=${x})`);
  });
});

describe('bench: wrk result line', () => {
  const line = `${WRK_MARKER}{"durationUs":2000000,"requests":50,"bytes":524300000,"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":0},"latencyUs":{"mean":1500.5,"p50":1200,"p75":1800,"p90":2500,"p99":9000,"max":12000}}`;

  test('rates, error sum and milliseconds from the Lua done() line among wrk\'s own output', () => {
    const r = parseWrkOutput(`Running 2s test @ https://10.0.0.1:1/load.bin\n  1 threads and 1 connections\n${line}\nRequests/sec:     25.00\n`);
    assert.equal(r.durationS, 2);
    assert.equal(r.requests, 50);
    assert.equal(r.requestsPerSec, 25);
    assert.equal(r.bytesPerSec, 262150000);
    assert.equal(r.errors, 3);
    assert.deepEqual(r.latencyMs, { mean: 1.5005, p50: 1.2, p75: 1.8, p90: 2.5, p99: 9, max: 12 });
  });

  test('no completed request: bytes still count, latencies are absent rather than zero', () => {
    const r = parseWrkOutput(`${WRK_MARKER}{"durationUs":2000000,"requests":0,"bytes":300000000,"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},"latencyUs":{"mean":0,"p50":0,"p75":0,"p90":0,"p99":0,"max":0}}\n`);
    assert.equal(r.bytesPerSec, 150000000);
    assert.equal(r.requestsPerSec, 0);
    assert.equal(r.latencyMs, null);
  });

  test('no result line (wrk could not connect) is an error carrying the output', () => {
    assert.throws(() => parseWrkOutput('unable to connect to 10.0.0.1:1 Connection refused\n'), /Connection refused/);
  });
});

describe('bench: openssl speed -mr', () => {
  test('bytes per second from the +F line', () => {
    const out = '+DT:AES-128-GCM:1:16384\n+R:225000:AES-128-GCM:1.000000\n+H:16384\n+F:25:AES-128-GCM:3688336290.91\n';
    assert.equal(parseOpensslSpeed(out), 3688336290.91);
    assert.throws(() => parseOpensslSpeed('+H:16384\n'), /no \+F line/);
  });
});

describe('bench: ratio maths', () => {
  test('CPU per GB, the crypto floor and ratios to it', () => {
    assert.equal(cpuPerGB(2, 4e9), 0.5);
    assert.equal(cpuPerGB(1, 0), null);
    // 4 GB/s of AES-GCM on one core: 0.25 CPU-s per GB.
    assert.equal(floorCpuPerGB(4e9), 0.25);
    assert.equal(ratio(cpuPerGB(2, 4e9), floorCpuPerGB(4e9)), 2);
    assert.equal(ratio(1, 0), null);
    assert.equal(ratio(null, 2), null);
  });

  test('median of odd and even counts, none for no values', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([]), null);
  });

  test('tls_stat deltas flag a kernel point that fell back to userspace', () => {
    const d = counterDelta({ TlsTxSw: 10, TlsCurrTxSw: 2 }, { TlsTxSw: 14, TlsCurrTxSw: 0, TlsRxSw: 1 });
    assert.deepEqual(d, { TlsTxSw: 4, TlsCurrTxSw: -2, TlsRxSw: 1 });
    assert.equal(ktlsProven(d), true);
    assert.equal(ktlsProven(counterDelta({ TlsTxSw: 10 }, { TlsTxSw: 10 })), false);
    assert.equal(ktlsProven({ TlsTxDevice: 1 }), true);
  });

  test('RAPL energy across a counter wrap', () => {
    const at = (uj: number) => ({ zones: new Map([['intel-rapl:0', [uj, 1_000_000] as [number, number]]]) });
    assert.equal(energyJoules(at(200_000), at(700_000)), 0.5);
    assert.equal(energyJoules(at(900_000), at(100_000)), 0.2);
    assert.equal(energyJoules(null, at(1)), null);
  });
});

describe('bench: /proc/<pid>/limits', () => {
  test('"Max open files" is the soft limit (the first column), "unlimited" is Infinity', () => {
    const limits = ['Limit                     Soft Limit           Hard Limit           Units     ', 'Max processes             95000                95000                processes ', 'Max open files            1024                 524288               files     ', ''].join('\n');
    assert.equal(parseOpenFilesLimit(limits), 1024);
    assert.equal(parseOpenFilesLimit(limits.replace('1024 ', 'unlimited')), Infinity);
  });

  test('a text without the line is refused, not read as no limit', () => {
    assert.throws(() => parseOpenFilesLimit('Max processes 1 1 processes\n'), /no "Max open files"/);
  });

  test('this process: Node raised its soft limit to a number', () => {
    assert.ok(parseOpenFilesLimit(fs.readFileSync('/proc/self/limits', 'utf8')) > 0);
  });
});

describe('roundRatios (same-round ratios, never a ratio of medians)', () => {
  test('pairs the n-th values, takes the median and the spread', () => {
    // Round 2 is slow for both: its ratio is still 1.1.
    const r = roundRatios([110, 220, 55], [100, 200, 50]);
    assert.equal(r.rounds, 3);
    assert.ok(Math.abs(r.value! - 1.1) < 1e-9 && Math.abs(r.min! - 1.1) < 1e-9 && Math.abs(r.max! - 1.1) < 1e-9);
  });
  test('differs from the ratio of medians when the rounds drift', () => {
    const r = roundRatios([1, 10, 100], [2, 5, 1000]);
    // per round: 0.5, 2, 0.1 -> median 0.5; medians would give 10 / 5 = 2
    assert.equal(r.value, 0.5);
    assert.equal(r.min, 0.1);
    assert.equal(r.max, 2);
  });
  test('skips rounds where either side is missing or zero', () => {
    const r = roundRatios([1, null, 3], [1, 2, 0]);
    assert.equal(r.rounds, 1);
    assert.equal(r.value, 1);
    assert.deepEqual(roundRatios([], []), { value: null, min: null, max: null, rounds: 0 });
  });
});

describe('bench: a reaped child\'s CPU from the shell\'s /proc/<pid>/stat', () => {
  // A dash process that has waited for h2load: utime 1, stime 0, cutime 57, cstime 12 (fields 14-17).
  const stat = '4242 (sh) S 4200 4242 4200 0 -1 4194304 120 300 0 0 1 0 57 12 20 0 1 0 99 2584576 200 18446744073709551615 1 1 0 0 0 0 0 0 65538 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0';

  test('cutime + cstime of the last line, after whatever the program printed on stderr', () => {
    assert.equal(parseChildTicks(stat), 69);
    assert.equal(parseChildTicks(`h2load: some warning\n${stat}\n`), 69);
  });

  test('a command name with spaces and parentheses does not shift the fields', () => {
    assert.equal(parseChildTicks(stat.replace('(sh)', '(a (b) c)')), 69);
  });

  test('no stat line (the shell was killed first) is refused, not read as 0 CPU', () => {
    assert.throws(() => parseChildTicks(''), /no cutime\/cstime/);
    assert.throws(() => parseChildTicks('4242 (sh) S 4200'), /no cutime\/cstime/);
  });
});
