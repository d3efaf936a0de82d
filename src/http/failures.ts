/**
 * What a failed exchange means: whose fault it was (the client's never
 * counts against an upstream's health) and which status the client gets
 * when no status line has gone out yet.
 */
import { BodyTooLargeError, ClientGoneError, ClientTimeoutError, InvalidRequestError, NotImplementedRequestError, UpstreamTimeoutError } from '../errors.js';

/** Failures of the client's making: logged at info, never counted against an upstream's health. */
export function isClientFault(err: unknown): boolean {
  return err instanceof ClientGoneError || err instanceof ClientTimeoutError || err instanceof InvalidRequestError || err instanceof BodyTooLargeError || err instanceof NotImplementedRequestError;
}

/**
 * The status for a request that failed before the client got a status line:
 * the client's own fault is a 400 (RFC 9112 §3.2: a repeated Host; §6.3: an
 * unusable Content-Length) or a 413, never a gateway error.
 */
export function failureStatus(err: unknown): 400 | 413 | 499 | 501 | 502 | 504 | 505 {
  if (err instanceof InvalidRequestError) return 400;
  if (err instanceof NotImplementedRequestError) return err.status;
  // nginx's 499 (for the log only: nobody is there to read it): a client that left before its
  // answer is not a gateway failure, and a 502 there set off alerts on upstream errors.
  if (err instanceof ClientGoneError) return 499;
  if (err instanceof BodyTooLargeError) return 413;
  if (err instanceof UpstreamTimeoutError) return 504;
  return 502;
}
