/**
 * `--config FILE`: the settings of `aludel serve`, `proxy` or `tcp` as YAML
 * (.yaml/.yml) or JSON (.json), keyed by the long flag names, e.g.
 *
 *   listen: 127.0.0.1:8443
 *   to: [http://10.0.0.5:8080, http://10.0.0.6:8080]
 *   connect-timeout: 5s
 *
 * Relative paths (cert, key, upstream-ca, cache, root, access-log, ticket-keys, acme-storage, acme-ca) are taken relative to the
 * config file's directory, so a config and its certificates move together.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as Yaml from 'yaml';
import { InvalidOptionError } from '../errors.js';
import { ACCESS_LOG_OFF } from '../log/access-log.js';
import { jsonDuplicateKeys } from './json-duplicate-keys.js';
import { readSmallRegularFile } from './readable-file.js';
import { parseProxyInput, type ProxyInput, type SettingsMode } from './proxy-input.js';

/**
 * The yaml package is required when a .yaml/.yml file is read, not at start:
 * it is about 8 MiB of RSS and 60 ms of start-up in every process (each
 * worker), most of which are given no config file or a JSON one. Its
 * CommonJS build loads synchronously, as settings are read.
 */
const requireYaml = (): typeof Yaml => createRequire(import.meta.url)('yaml') as typeof Yaml;

/**
 * A config is a few hundred bytes of settings; 1 MiB is thousands of times
 * that and still small in every worker, while /dev/zero or a log file named
 * by mistake is refused before it is read whole into memory.
 */
const MAX_CONFIG_BYTES = 1024 * 1024;

const PATH_KEYS = ['cert', 'key', 'upstream-ca', 'cache', 'root', 'access-log', 'ticket-keys', 'acme-storage', 'acme-ca'] as const;

/**
 * The yaml library's refusal in an admin's words. Its texts for two of them
 * speak to a programmer (MULTIPLE_DOCS: "please use YAML.parseAllDocuments()")
 * or name its own recursion limit (RESOURCE_EXHAUSTION: "Maximum call stack
 * size exceeded"), and neither is cured by the quoting advice the others get.
 */
function yamlProblem(err: Error & { code?: string; linePos?: Array<{ line: number }> }): string {
  const line = err.linePos?.[0]?.line;
  const at = line === undefined ? '' : ` (line ${line})`;
  if (err.code === 'MULTIPLE_DOCS') return `more than one YAML document${at}: a '---' line starts another; keep the settings in one document`;
  if (err.code === 'RESOURCE_EXHAUSTION' && /call stack/.test(err.message)) return `not valid YAML: nested too deeply${at}; settings are at most a list of values`;
  return `not valid YAML: ${err.message}\n(quote values that start with [ { * & ! | > ' " % @ or a backquote, e.g. listen: "[::1]:8443")`;
}

function parseText(file: string, text: string): unknown {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new InvalidOptionError(`config ${file}: not valid JSON: ${(err as Error).message}`);
    }
    const dups = jsonDuplicateKeys(text);
    if (dups.length > 0) throw new InvalidOptionError(`config ${file}: ${dups.map((k) => JSON.stringify(k)).join(', ')} given more than once; give each key once`);
    return value;
  }
  if (ext === '.yaml' || ext === '.yml') {
    try {
      // YAML 1.2 core schema (the yaml package's default, stated here because it matters): unlike
      // YAML 1.1, `no`/`off` stay strings and `1:30` is not a base-60 number. Duplicate keys are errors.
      return requireYaml().parse(text, { version: '1.2', schema: 'core', uniqueKeys: true });
    } catch (err) {
      throw new InvalidOptionError(`config ${file}: ${yamlProblem(err as Error & { code?: string; linePos?: Array<{ line: number }> })}`);
    }
  }
  throw new InvalidOptionError(`config ${file}: unknown format ${JSON.stringify(ext || '(no extension)')}; name it .yaml, .yml or .json`);
}

/** The config file's text, as it is on disk now. */
export async function readConfigText(file: string): Promise<string> {
  try {
    return await readSmallRegularFile(file, MAX_CONFIG_BYTES);
  } catch (err) {
    throw new InvalidOptionError(`--config ${file}: ${(err as Error).message}`);
  }
}

/**
 * Reads, parses and validates a config file; every problem in it is reported at once.
 * `text`: the file's text as read before (a --workers primary's copy), instead of the file now.
 */
export async function loadProxyConfigFile(file: string, mode: SettingsMode, text?: string): Promise<ProxyInput> {
  text ??= await readConfigText(file);
  const raw = parseText(file, text) ?? {}; // an empty YAML document is null: no settings
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidOptionError(`config ${file}: expected a mapping of settings (key: value), got ${Array.isArray(raw) ? 'a list' : JSON.stringify(raw)}`);
  }
  const { values, problems } = parseProxyInput(mode, raw as Record<string, unknown>, { kind: 'file', file });
  if (problems.length > 0) throw new InvalidOptionError(problems.join('\n'));
  const dir = path.dirname(file);
  for (const key of PATH_KEYS) {
    const p = values[key];
    // `access-log: off` is a word, not a file beside the config (nginx's access_log off).
    if (key === 'access-log' && p === ACCESS_LOG_OFF) continue;
    if (typeof p === 'string') (values as Record<string, unknown>)[key] = path.resolve(dir, p);
    else if (Array.isArray(p)) (values as Record<string, unknown>)[key] = p.map((f: string) => path.resolve(dir, f));
  }
  return values;
}
