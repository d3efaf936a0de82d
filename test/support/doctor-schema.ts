/**
 * `aludel doctor --json` checked against schema/doctor-report.schema.json
 * (JSON Schema 2020-12, ajv strict), and what the kernel lists for its NIC part.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/test/support -> the package root. */
const schemaPath = fileURLToPath(new URL('../../../schema/doctor-report.schema.json', import.meta.url));
const validate = new Ajv2020({ allErrors: true, strict: true }).compile(JSON.parse(fs.readFileSync(schemaPath, 'utf8')) as object);

/** Validation errors as "path: message" ("$" is the root), [] when valid. */
export function doctorSchemaProblems(report: unknown): string[] {
  if (validate(report)) return [];
  return (validate.errors ?? []).map((e) => `$${e.instancePath}: ${e.message ?? e.keyword}`);
}

/** The interfaces of this network namespace, sorted: the symlinks of /sys/class/net (bonding adds a plain file, bonding_masters). */
export function netInterfaceNames(): string[] {
  return fs
    .readdirSync('/sys/class/net')
    .filter((n) => fs.lstatSync(path.join('/sys/class/net', n)).isSymbolicLink())
    .sort();
}
