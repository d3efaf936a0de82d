/**
 * Connections (HTTP/1.1) and streams (HTTP/2) that Aludel closed because
 * their client took nothing for --idle-timeout, so that a response cut by
 * that close is logged as the timeout it was (ERR_CLIENT_TIMEOUT, as nginx's
 * "client timed out"), not as a client that reset its connection: the write
 * that failed only sees the close (ECONNRESET).
 */
import { ClientTimeoutError } from '../errors.js';

const closedAfter = new WeakMap<object, number>();

/** `target` (a connection, or an HTTP/2 stream) is being closed by its --idle-timeout of `ms`. */
export function closedForTimeout(target: object, ms: number): void {
  closedAfter.set(target, ms);
}

/**
 * The error a cut response's access-log line names: ClientTimeoutError when
 * our own timeout closed its stream or connection, else `err` as it came.
 * `stream`: the request's HTTP/2 stream, if it has one.
 */
export function cutCause(err: unknown, conn: object, stream: object | undefined): unknown {
  const ms = (stream === undefined ? undefined : closedAfter.get(stream)) ?? closedAfter.get(conn);
  return ms === undefined ? err : new ClientTimeoutError(ms);
}
