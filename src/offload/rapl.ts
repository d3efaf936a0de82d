/**
 * RAPL energy counters (/sys/class/powercap/intel-rapl:*), which benchmarks
 * need to report energy per request. AMD CPUs appear under the same names.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface RaplZone {
  /** Directory name, e.g. "intel-rapl:0". */
  id: string;
  /** Contents of its "name" file, e.g. "package-0"; null if unreadable. */
  name: string | null;
  energyCounter: boolean;
  /** energy_uj is readable by this process (root-only on Linux >= 5.10). */
  readable: boolean;
}

export interface RaplReport {
  present: boolean;
  zones: RaplZone[];
}

export function readRapl(root: string): RaplReport {
  const dir = path.join(root, '/sys/class/powercap');
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return { present: false, zones: [] };
  }
  const zones: RaplZone[] = [];
  for (const id of entries.filter((e) => e.includes('rapl')).sort()) {
    const zone = path.join(dir, id);
    const energy = path.join(zone, 'energy_uj');
    const energyCounter = fs.existsSync(energy);
    // The control-type directory ("intel-rapl") has neither a name nor a counter.
    if (!energyCounter && !fs.existsSync(path.join(zone, 'name'))) continue;
    let name: string | null = null;
    try {
      name = fs.readFileSync(path.join(zone, 'name'), 'utf8').trim();
    } catch {
      /* no name file */
    }
    let readable = false;
    if (energyCounter) {
      try {
        fs.accessSync(energy, fs.constants.R_OK);
        readable = true;
      } catch {
        /* not readable */
      }
    }
    zones.push({ id, name, energyCounter, readable });
  }
  return { present: zones.some((z) => z.energyCounter), zones };
}
