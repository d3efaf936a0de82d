/**
 * GET/HEAD handling for a static document root, in the spirit of nginx's
 * static module: validators, conditional requests, single byte ranges.
 *
 * The body bytes themselves are moved by an injected BodySender so the same
 * logic serves both the sendfile (kernel TLS) and the userspace-write paths,
 * and HTTP/1.1 and HTTP/2 alike (node's compatibility API). No header it sets
 * is connection-specific (RFC 9113 §8.2.2 forbids those on HTTP/2).
 */
import fs, { constants as fsConstants } from 'node:fs';
import type http from 'node:http';
import http2 from 'node:http2';
import type { AnyRequest } from './alpn-front.js';
import type { H1Response, LaneRequest } from './h1-lane.js';
import { evaluatePreconditions, ifRangeAllows, mayHaveConditions } from './conditional.js';
import { validatorsFor, type FileValidators } from './file-validators.js';
import type { FileStat } from './file-stat.js';
import { parseRange } from './range.js';
import { closeOpened, errorCode, isWithin, openUnderRoot, resolveUnderRoot, type OpenBeneath, type OpenedUnderRoot, type Refused } from './safe-path.js';
import type { OpenFiles } from './open-files.js';

import { closeQuietly } from '../transport/close-quietly.js';
import { cutOf } from '../transport/body-cut.js';
import type { BodyPath } from '../transport/copy-file.js';

export type { BodyPath };

/** What serve answers: node's HTTP/1.1 and HTTP/2 requests (alpn-front.ts) and the lane's (h1-lane.ts). */
export type ServedRequest = AnyRequest | LaneRequest;

/**
 * What serve does to a response, which node's HTTP/1.1 and HTTP/2 responses
 * and the lane's (h1-lane.ts LaneResponse) all do: the compiler holds the
 * lane's response to it. An interface, not their union, because TypeScript
 * cannot call a method that two members of a union overload differently.
 * writeHead with a flat list is called through node:http's type (writeHead
 * below).
 */
export interface ServedResponse {
  statusCode: number;
  readonly headersSent: boolean;
  readonly writableFinished: boolean;
  setHeader(name: string, value: string | number): unknown;
  removeHeader(name: string): void;
  end(): unknown;
  end(data: string | Buffer): unknown;
  destroy(err?: Error): unknown;
}

/** An HTTP/2 response (node:http2's compatibility API); else asH1Response applies. */
export function isH2Response(res: ServedResponse): res is http2.Http2ServerResponse {
  return res instanceof http2.Http2ServerResponse;
}

/** A response that is not HTTP/2 (isH2Response): the other two kinds, node's HTTP/1.1 one and the lane's. */
export function asH1Response(res: ServedResponse): H1Response {
  return res as H1Response;
}

export interface BodySender {
  /** Writes res's headers then exactly `length` bytes of fd from `offset`, then ends res. Resolves with the path the body took. Rejects if the connection died. */
  sendBody(res: ServedResponse, fd: number, offset: number, length: number): Promise<BodyPath>;
  /**
   * What sendBody does, done at once when nothing has to be waited for (the
   * connection free, the bytes in the page cache), the head included: it is
   * given as `head` and written with res.writeHead (see ResponseHead), res
   * having none set. The path the body took, or undefined having done
   * nothing to res, and then the head is set on res and sendBody is called.
   * Throws as sendBody rejects, with res untouched. Optional: without it
   * every body goes by sendBody.
   */
  sendBodyNow?(res: ServedResponse, fd: number, offset: number, length: number, head: ResponseHead): BodyPath | undefined;
}

/**
 * A response head as res.writeHead(status, fields) takes it: fields a flat
 * [name, value, name, value, ...] list. Given that way (and no setHeader
 * before), node's HTTP/1.1 response keeps no header map: setHeader lowercases
 * each name into a null-prototype object that _storeHeader then walks with
 * for-in, where writeHead's list is validated (token name, value characters:
 * _http_outgoing.js processHeader with validate) and joined as it stands.
 */
export interface ResponseHead {
  status: number;
  fields: Array<string | number>;
}

export interface StaticOutcome {
  status: number;
  bytes: number;
  bodyPath: BodyPath;
  file?: string;
  /** Set when the response failed (500) or was cut short (socket destroyed). */
  error?: unknown;
}

export interface StaticHandlerOptions {
  root: string /* realpath'ed */;
  sender: BodySender;
  /** openat2 beneath the root (safe-path.ts openUnderRoot), where the addon and the kernel have it. */
  openBeneath?: OpenBeneath;
  /** Descriptors kept between requests (open-files.ts), with openBeneath only. */
  files?: OpenFiles;
}

/** What to send from the open file once validators and Range are settled. */
interface BodyPlan {
  status: 200 | 206;
  start: number;
  length: number;
}

/** Headers this handler may have set; cleared before an error answer replaces them. */
const OWN_HEADERS = [
  'content-type',
  'content-length',
  'content-range',
  'last-modified',
  'etag',
  'accept-ranges',
  'allow',
] as const;

/**
 * O_NOFOLLOW: the path is already realpath'ed, so a symlink in its last
 * component means it was swapped in after the check. O_NONBLOCK: if a FIFO is
 * swapped in, open must not park a libuv thread waiting for a writer (it is
 * a no-op for the regular files we actually serve).
 */
const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/**
 * A request's outcome: settled at once when nothing had to be waited for
 * (the common GET of a small cached file), else a promise. Each await costs
 * a promise and a microtask turn; a profile of 1 KiB keep-alive GETs had a
 * quarter of serve's CPU in the promise machinery of one such chain.
 */
export type StaticResult = StaticOutcome | Promise<StaticOutcome>;

export function createStaticHandler(opts: StaticHandlerOptions): (req: ServedRequest, res: ServedResponse) => StaticResult {
  return (req, res) => {
    let out: StaticResult;
    try {
      out = handle(opts, req, res);
    } catch (err) {
      return failUnexpectedly(res, req.method ?? '', err);
    }
    if (out instanceof Promise) return out.catch((err: unknown) => failUnexpectedly(res, req.method ?? '', err));
    return out;
  };
}

function handle(opts: StaticHandlerOptions, req: ServedRequest, res: ServedResponse): StaticResult {
  const method = req.method ?? '';
  if (method !== 'GET' && method !== 'HEAD') {
    // §15.5.6: a 405 MUST carry Allow listing the supported methods.
    res.setHeader('Allow', 'GET, HEAD');
    return sendText(res, method, 405, 'Method Not Allowed\n');
  }

  if (opts.openBeneath) {
    const fast = openUnderRoot(opts.openBeneath, opts.root, req.url ?? '', opts.files);
    if (fast !== 'fallback') {
      if (fast.kind !== 'open') return answerUnresolved(res, method, fast);
      // openUnderRoot's fstat is of this same open fd: its validators describe the inode served.
      return serveFd(opts.sender, req, res, method, fast, opts.files);
    }
  }
  return serveResolved(opts, req, res, method);
}

/** The realpath way (no openat2, directories, what the kernel would not resolve beneath the root). */
async function serveResolved(opts: StaticHandlerOptions, req: ServedRequest, res: ServedResponse, method: string): Promise<StaticOutcome> {
  const resolved = await resolveUnderRoot(opts.root, req.url ?? '');
  if (resolved.kind !== 'file') return answerUnresolved(res, method, resolved);
  return serveFile(opts.sender, req, res, method, resolved.path, opts.root);
}

function answerUnresolved(res: ServedResponse, method: string, refused: Refused): StaticOutcome {
  const { kind } = refused;
  if (kind === 'redirect') {
    res.setHeader('Location', refused.location);
    return sendText(res, method, 301, 'Moved Permanently\n');
  }
  if (kind === 'bad-request') return sendText(res, method, 400, 'Bad Request\n');
  if (kind === 'forbidden') return sendText(res, method, 403, 'Forbidden\n');
  return sendText(res, method, 404, 'Not Found\n');
}

function serveFile(
  sender: BodySender,
  req: ServedRequest,
  res: ServedResponse,
  method: string,
  found: string | Buffer,
  root: string,
): StaticResult {
  // A Buffer names bytes that are not UTF-8 (a Latin-1 file name): opened by those bytes, and
  // named in the log, Content-Type and validators by their latin1 reading.
  const file = typeof found === 'string' ? found : found.toString('latin1');
  // open, fstat and close run inline, as nginx runs them: resolution (realpath, stat) has just
  // run on the thread pool, so a cold directory or inode never blocks the event loop, and left
  // the dentries and inode cached; these are then syscalls of a few microseconds each, where a
  // thread-pool round trip costs the event loop several times that (a profile of 64 KiB
  // downloads had open, fstat and close at over a fifth of serve's CPU).
  let fd: number;
  try {
    fd = fs.openSync(found, OPEN_FLAGS);
  } catch (err) {
    return withFile(answerOpenError(res, method, err), file);
  }
  // Validators come from the open fd: if the file was replaced since
  // resolution, headers and body still describe the same inode.
  let stat: FileStat;
  try {
    stat = fs.fstatSync(fd);
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  // O_NOFOLLOW guards the last component only: open(2) follows a symlink swapped in for any
  // directory on the way since realpath checked the path, which can lead outside the root.
  if (!openedWithin(fd, root)) {
    closeQuietly(fd);
    return sendText(res, method, 403, 'Forbidden\n');
  }
  return serveFd(sender, req, res, method, { fd, path: file, stat, relative: '' }, undefined);
}

/**
 * Whether the file `fd` refers to lies beneath `root` where it was opened:
 * its path as the kernel gives it (/proc/self/fd, d_path: no symlink in it).
 * Checking the descriptor, not the path, leaves no window between check and
 * open. No /proc: not known, so refused.
 */
function openedWithin(fd: number, root: string): boolean {
  let where: string;
  try {
    where = fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return false;
  }
  return isWithin(root, where);
}

/**
 * Serves an open file whose fstat is `stat`, then gives its descriptor back
 * (closeOpened: kept for the next request, or closed), at once or when the
 * sender settles: a sendfile(2) on the thread pool may still read it.
 */
function serveFd(sender: BodySender, req: ServedRequest, res: ServedResponse, method: string, f: Omit<OpenedUnderRoot, 'kind'>, files: OpenFiles | undefined): StaticResult {
  let out: StaticResult;
  try {
    out = serveOpenFile(sender, req, res, method, f.fd, f.path, f.stat);
  } catch (err) {
    closeOpened(files, f.relative, f.fd);
    throw err;
  }
  if (out instanceof Promise) return closeWhenSettled(out, f, files);
  closeOpened(files, f.relative, f.fd);
  return withFile(out, f.path);
}

/**
 * Notes the file on an outcome made for this request alone. Added in place:
 * a copy by spread ({ ...out, file }) went through V8's slow runtime path
 * (Runtime_DefineNamedOwnIC_Slow), a few percent of serve's CPU in a
 * profile of 1 KiB keep-alive GETs.
 */
function withFile(out: StaticOutcome, file: string): StaticOutcome {
  out.file = file;
  return out;
}

async function closeWhenSettled(out: Promise<StaticOutcome>, f: Omit<OpenedUnderRoot, 'kind'>, files: OpenFiles | undefined): Promise<StaticOutcome> {
  try {
    return withFile(await out, f.path);
  } finally {
    closeOpened(files, f.relative, f.fd);
  }
}

function answerOpenError(res: ServedResponse, method: string, err: unknown): StaticOutcome {
  const code = errorCode(err);
  // ELOOP is O_NOFOLLOW refusing a symlink swapped in after resolution.
  if (code === 'ENOENT' || code === 'ENOTDIR') return sendText(res, method, 404, 'Not Found\n');
  if (code === 'EACCES' || code === 'EPERM' || code === 'ELOOP') return sendText(res, method, 403, 'Forbidden\n');
  throw err;
}

function serveOpenFile(
  sender: BodySender,
  req: ServedRequest,
  res: ServedResponse,
  method: string,
  fd: number,
  file: string,
  stat: FileStat,
): StaticResult {
  if (!stat.isFile()) return sendText(res, method, 404, 'Not Found\n');

  const v = validatorsFor(file, stat);
  let plan: BodyPlan | 'unsatisfiable' = { status: 200, start: 0, length: stat.size };
  // Without a field that may be a precondition or a Range (mayHaveConditions) there is none to look up.
  if (mayHaveConditions(req.rawHeaders)) {
    const precondition = evaluatePreconditions({ method, headers: req.headers }, v.etag, v.lastModified);
    if (precondition === 'not-modified') return sendNotModified(res, v);
    if (precondition === 'precondition-failed') return sendText(res, method, 412, 'Precondition Failed\n');
    plan = planBody(req, method, stat.size, v.etag, v.lastModified);
  }
  if (plan === 'unsatisfiable') {
    // §15.5.17: a 416 for byte ranges SHOULD say the current length.
    res.setHeader('Content-Range', `bytes */${stat.size}`);
    return sendText(res, method, 416, 'Range Not Satisfiable\n');
  }

  return sendPlannedBody(sender, res, method, fd, plan, { status: plan.status, fields: fileFields(v, plan, stat.size) });
}

/** The head of a 200 or 206 (RFC 9110 §15.3.7: Content-Range on a 206 of one range), in the order setHeader once gave it. */
function fileFields(v: FileValidators, plan: BodyPlan, size: number): Array<string | number> {
  // The whole file: the list kept with the validators (the same each request, made once per file version).
  if (plan.status === 200 && plan.length === size && v.fullFields[9] === size) return v.fullFields;
  const fields: Array<string | number> = [
    'Content-Type', v.contentType, 'Last-Modified', v.lastModifiedText, 'ETag', v.etag, 'Accept-Ranges', 'bytes', 'Content-Length', plan.length,
  ];
  if (plan.status === 206) fields.push('Content-Range', `bytes ${plan.start}-${plan.start + plan.length - 1}/${size}`);
  return fields;
}

/**
 * res.writeHead with a flat list, which both node:http and node:http2's
 * compatibility API take (the latter appends each pair); @types/node types
 * the list for node:http only.
 */
function writeHead(res: ServedResponse, head: ResponseHead): void {
  (res as http.ServerResponse).writeHead(head.status, head.fields);
}

/** Sets a head on res field by field (status and header map), for the senders that flush it themselves. */
function setHead(res: ServedResponse, head: ResponseHead): void {
  res.statusCode = head.status;
  const f = head.fields;
  for (let i = 0; i + 1 < f.length; i += 2) res.setHeader(f[i] as string, f[i + 1]!);
}

/**
 * §14.2: Range is defined for GET only, and §13.1.5 makes it conditional on
 * If-Range. Multiple ranges get the full body (allowed by §14.2) rather than
 * multipart/byteranges.
 */
function planBody(
  req: ServedRequest,
  method: string,
  size: number,
  etag: string,
  lastModified: Date,
): BodyPlan | 'unsatisfiable' {
  const full: BodyPlan = { status: 200, start: 0, length: size };
  const header = req.headers.range;
  if (method !== 'GET' || header === undefined) return full;
  if (!ifRangeAllows(headerString(req.headers['if-range']), etag, lastModified)) return full;

  const range = parseRange(header, size);
  if (range.kind === 'unsatisfiable') return 'unsatisfiable';
  if (range.kind !== 'single') return full;
  return { status: 206, start: range.start, length: range.end - range.start + 1 };
}

/** If-Range is not in Node's typed header list, so it may arrive as an array. */
function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function sendPlannedBody(
  sender: BodySender,
  res: ServedResponse,
  method: string,
  fd: number,
  plan: BodyPlan,
  head: ResponseHead,
): StaticResult {
  // §9.3.2: HEAD gets the same headers as GET but never a body.
  if (method === 'HEAD' || plan.length === 0) {
    writeHead(res, head);
    res.end();
    return { status: plan.status, bytes: 0, bodyPath: 'none' };
  }
  if (sender.sendBodyNow !== undefined) {
    try {
      const bodyPath = sender.sendBodyNow(res, fd, plan.start, plan.length, head);
      if (bodyPath !== undefined) return { status: plan.status, bytes: plan.length, bodyPath };
    } catch (err) {
      return abortBody(res, method, plan.status, err);
    }
  }
  setHead(res, head);
  return sendBodyLater(sender, res, method, fd, plan);
}

async function sendBodyLater(sender: BodySender, res: ServedResponse, method: string, fd: number, plan: BodyPlan): Promise<StaticOutcome> {
  try {
    const bodyPath = await sender.sendBody(res, fd, plan.start, plan.length);
    return { status: plan.status, bytes: plan.length, bodyPath };
  } catch (err) {
    return abortBody(res, method, plan.status, err);
  }
}

/**
 * Once the status line is out, a 500 is impossible; destroying the socket
 * makes the client see a short body (Content-Length mismatch) instead of
 * silently accepting a wrong one.
 */
function abortBody(res: ServedResponse, method: string, status: number, err: unknown): StaticOutcome {
  if (!res.headersSent) return failUnexpectedly(res, method, err);
  if (!res.writableFinished) res.destroy(asError(err));
  // The bytes that did go out, as nginx's $body_bytes_sent counts them for a response cut short.
  const cut = cutOf(err);
  return { status, bytes: cut.bytes, bodyPath: cut.path, error: err };
}

/** §15.4.5: a 304 repeats the validators but carries no body or Content-Length. */
function sendNotModified(res: ServedResponse, v: FileValidators): StaticOutcome {
  writeHead(res, { status: 304, fields: v.notModifiedFields });
  res.end();
  return { status: 304, bytes: 0, bodyPath: 'none' };
}

/** Small text/plain answers for errors; Node drops the body itself for HEAD. */
function sendText(res: ServedResponse, method: string, status: number, text: string): StaticOutcome {
  const length = Buffer.byteLength(text);
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', length);
  res.end(text);
  return { status, bytes: method === 'HEAD' ? 0 : length, bodyPath: 'none' };
}

function failUnexpectedly(res: ServedResponse, method: string, err: unknown): StaticOutcome {
  if (res.headersSent) {
    // A response that already went out whole is left alone: destroying the
    // socket now would only kill the next keep-alive request.
    if (!res.writableFinished) res.destroy(asError(err));
    const cut = cutOf(err);
    return { status: res.statusCode, bytes: cut.bytes, bodyPath: cut.path, error: err };
  }
  for (const name of OWN_HEADERS) res.removeHeader(name);
  return { ...sendText(res, method, 500, 'Internal Server Error\n'), error: err };
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
