/**
 * Package energy from RAPL (powercap energy_uj, root-only since Linux 5.10)
 * where the CPU exposes it; null otherwise (VMs, this machine's cloud host),
 * and the results then say power was unavailable.
 */
import fs from 'node:fs';
import path from 'node:path';
import { readRapl } from '../src/offload/rapl.js';

const POWERCAP = '/sys/class/powercap';

export interface EnergyReading {
  /** zone id -> [energy µJ, wrap range µJ] */
  zones: Map<string, [number, number]>;
}

export function readEnergy(): EnergyReading | null {
  const report = readRapl('/');
  // Top-level package zones only: their subzones (core, dram) are parts of them.
  const zones = report.zones.filter((z) => z.readable && /^intel-rapl:\d+$/.test(z.id));
  if (zones.length === 0) return null;
  const out = new Map<string, [number, number]>();
  for (const z of zones) {
    const dir = path.join(POWERCAP, z.id);
    const e = Number(fs.readFileSync(path.join(dir, 'energy_uj'), 'utf8'));
    let range = Number.MAX_SAFE_INTEGER;
    try {
      range = Number(fs.readFileSync(path.join(dir, 'max_energy_range_uj'), 'utf8'));
    } catch {
      /* no range file: assume no wrap */
    }
    out.set(z.id, [e, range]);
  }
  return { zones: out };
}

/** Joules between two readings, allowing one counter wrap per zone. */
export function energyJoules(before: EnergyReading | null, after: EnergyReading | null): number | null {
  if (!before || !after) return null;
  let uj = 0;
  for (const [id, [b, range]] of before.zones) {
    const a = after.zones.get(id)?.[0];
    if (a === undefined) return null;
    uj += a >= b ? a - b : a + range - b;
  }
  return uj / 1e6;
}
