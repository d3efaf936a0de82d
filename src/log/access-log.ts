/**
 * The access log: one line per request, as nginx's access_log gives. By
 * default a JSON line ("msg":"request") in the main log on stdout; with
 * --access-log FILE, its own file, reopened on SIGUSR1 after logrotate has
 * moved it (nginx's USR1). Formats: json (the default: the same fields as
 * on stdout) or combined (nginx's "combined" text line, plus the fields
 * nginx admins usually add: request time, upstream, upstream header time,
 * request id). The file is written through pino's SonicBoom, asynchronously,
 * so a slow disk never holds a request.
 */
import { randomBytes } from 'node:crypto';
import { pino, type DestinationStream } from 'pino';
import { AccessFile } from './access-file.js';
import { stdoutSink } from './stdout-sink.js';
import type { Logger } from './logger.js';

export type AccessFormat = 'json' | 'combined';
export const ACCESS_FORMATS: readonly AccessFormat[] = ['json', 'combined'];
/** The --access-log value that turns request lines off, as nginx's `access_log off`. */
export const ACCESS_LOG_OFF = 'off';

/** What each request line holds (serve and proxy add their own fields beside these). */
export interface AccessFields {
  id: string;
  conn: number;
  /** The client's address and port. */
  client: string;
  /** HTTP/1.0, HTTP/1.1 or HTTP/2.0, as nginx's $server_protocol. */
  proto?: string;
  method: string | undefined;
  url: string | undefined;
  host: string | undefined;
  userAgent: string | undefined;
  referer: string | undefined;
  status: number;
  bytes: number;
  ms: number;
  /** The upstream (proxy only): its URL, and how long until its response head came. */
  upstream?: string | null;
  upstreamMs?: number | null;
  [more: string]: unknown;
}

export interface AccessLogOptions {
  /** null: the main log (stdout). */
  file: string | null;
  /** No request lines at all (--access-log off). */
  off?: boolean;
  format: AccessFormat;
  log: Logger;
}

/** A per-process prefix and a counter: unique ids without randomness per request. */
const ID_PREFIX = randomBytes(6).toString('hex');
let idCounter = 0;
export function requestId(): string {
  return `${ID_PREFIX}${(idCounter++).toString(16).padStart(8, '0')}`;
}

export class AccessLog {
  private readonly o: AccessLogOptions;
  /** --access-log FILE (access-file.ts: failures, a full queue, reopening); null: stdout. */
  private readonly file: AccessFile | null;
  /** The JSON format's logger: the main log, or one on the file's stream of the moment (null while it failed). */
  private json: Logger | null;
  /** false with --access-log off: callers skip building the line's fields. */
  readonly enabled: boolean;

  constructor(o: AccessLogOptions) {
    this.o = o;
    this.enabled = o.off !== true;
    this.json = o.log;
    // 0640: client addresses are personal data; the group can be the log shipper's.
    this.file = o.file === null || !this.enabled ? null : new AccessFile(o.file, o.log, (sink) => this.onSink(sink));
  }

  private onSink(sink: DestinationStream | null): void {
    this.json = sink === null ? null : pino({ base: { pid: process.pid } }, sink);
  }

  /**
   * Request lines are JSON lines of the main log itself (no --access-log, the
   * json format): a line the main log would write about the same event at
   * the same moment says nothing the request line cannot carry.
   */
  get jsonInMainLog(): boolean {
    return this.enabled && this.file === null && this.o.format === 'json';
  }

  /** Writes one request line; warn for requests that failed for a reason worth an admin's look. */
  write(level: 'info' | 'warn', fields: AccessFields): void {
    if (!this.enabled) return;
    const sink = this.file === null ? null : this.file.current();
    if (this.file !== null && sink === null) return;
    if (this.o.format === 'json') {
      this.json?.[level](fields, 'request');
      return;
    }
    const line = `${combinedLine(fields, new Date())}\n`;
    if (sink !== null) sink.write(line);
    else stdoutSink().write(line);
  }

  /** SIGUSR1: logrotate has renamed the file; write to a new one under the configured name. */
  reopen(): void {
    if (this.file === null) {
      this.o.log.info({ signal: 'SIGUSR1' }, this.enabled ? 'access log goes to stdout: nothing to reopen' : 'access log is off: nothing to reopen');
      return;
    }
    this.file.reopen();
  }

  close(): void {
    this.file?.close();
  }
}

/**
 * nginx's combined format, `$remote_addr - - [$time_local] "$request" $status
 * $body_bytes_sent "$http_referer" "$http_user_agent"`, then
 * `rt=$request_time ua=$upstream_addr uht=$upstream_header_time id=$request_id`.
 * Values from the client are escaped as nginx escapes them (\xHH for '"',
 * '\' and bytes outside printable ASCII), so a line cannot be forged.
 */
export function combinedLine(f: AccessFields, now: Date): string {
  const addr = f.client.slice(0, f.client.lastIndexOf(':')) || '-';
  // A request refused at the parse stage carries its request line as far as it came (as nginx's
  // $request then), "-" when none came; others are rebuilt from their parts.
  const refused = typeof f.request === 'string' ? f.request : undefined;
  const request = refused ?? (f.method === undefined ? '-' : `${f.method} ${f.url ?? ''} ${f.proto ?? 'HTTP/1.1'}`);
  const secs = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '-' : (ms / 1000).toFixed(3));
  return `${addr} - - [${timeLocal(now)}] "${escape(request)}" ${f.status} ${f.bytes} "${escape(f.referer ?? '-')}" "${escape(f.userAgent ?? '-')}"`
    + ` rt=${secs(f.ms)} ua=${f.upstream ? escape(f.upstream) : '-'} uht=${secs(f.upstreamMs)} id=${f.id}`;
}

/**
 * nginx's escaping of logged variables (ngx_http_log_escape): each byte
 * that is '"', '\' or outside printable ASCII (controls, DEL, 8-bit) as
 * \xHH. Heads are read as latin1, one char a byte; a char past 0xFF (an
 * HTTP/2 field node decoded otherwise) goes as its UTF-8 bytes.
 */
export function escape(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) out += s[i];
    else if (c <= 0xff) out += hex(c);
    else {
      const cp = s.codePointAt(i)!;
      if (cp > 0xffff) i++;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) out += hex(b);
    }
  }
  return out;
}

function hex(b: number): string {
  return `\\x${b.toString(16).toUpperCase().padStart(2, '0')}`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** 03/Dec/2026:20:15:02 +0000, in local time as nginx's $time_local. */
export function timeLocal(d: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const abs = Math.abs(off);
  return `${two(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${sign}${two(Math.floor(abs / 60))}${two(abs % 60)}`;
}
