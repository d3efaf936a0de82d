/** One error class per code (as undici does), each message saying what to do. */
export class AludelError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** --offload kernel was asked for and kTLS cannot work here. */
export class KtlsUnavailableError extends AludelError {
  constructor(message: string) {
    super('ERR_KTLS_UNAVAILABLE', message);
  }
}

/** The client did not finish the TLS handshake in time. */
export class HandshakeTimeoutError extends AludelError {
  constructor(ms: number) {
    super('ERR_TLS_HANDSHAKE_TIMEOUT', `TLS handshake not completed within ${ms} ms`);
  }
}

/**
 * A TLS 1.3 peer requested a KeyUpdate (RFC 8446 §4.6.3) on a kTLS TX socket.
 * OpenSSL 3.0 cannot hand the new key to the kernel and Linux < 6.14 cannot
 * re-key kTLS, so the connection is closed before any undecryptable record.
 */
export class KeyUpdateUnsupportedError extends AludelError {
  constructor() {
    super(
      'ERR_TLS_KEY_UPDATE_UNSUPPORTED',
      'peer requested a TLS 1.3 KeyUpdate, which kernel TLS cannot follow here (needs Linux >= 6.14 and OpenSSL >= 3.2); connection closed without further records',
    );
  }
}

/** A file being served changed size under us: abort rather than send wrong bytes. */
export class FileTruncatedError extends AludelError {
  constructor(expected: number, sent: number) {
    super('ERR_FILE_TRUNCATED', `file ended after ${sent} of ${expected} bytes (changed while being sent)`);
  }
}

export class InvalidOptionError extends AludelError {
  constructor(message: string) {
    super('ERR_INVALID_OPTION', message);
  }
}

/** The upstream closed before the whole body it announced: the client's response is aborted, never ended cleanly. */
export class UpstreamTruncatedError extends AludelError {
  constructor(detail: string) {
    super('ERR_UPSTREAM_TRUNCATED', `upstream response cut short: ${detail}`);
  }
}

/** A pinned upstream certificate did not match: never talk to an impostor. */
export class UpstreamCertificateError extends AludelError {
  constructor(message: string) {
    super('ERR_UPSTREAM_CERTIFICATE', message);
  }
}

/**
 * A kTLS upstream sent a record the connection cannot go on after: a fatal
 * alert, a TLS 1.3 KeyUpdate (Linux < 6.14 cannot re-key kTLS RX), or a
 * handshake message that has no place after the handshake.
 */
export class UpstreamTlsRecordError extends AludelError {
  constructor(message: string) {
    super('ERR_UPSTREAM_TLS_RECORD', message);
  }
}

/** The upstream did not connect, answer or move bytes in time (answered with 504 when nothing was sent yet). */
export class UpstreamTimeoutError extends AludelError {
  constructor(phase: 'connect' | 'headers' | 'body', ms: number, upstream: string) {
    super('ERR_UPSTREAM_TIMEOUT', `upstream ${upstream}: no ${phase === 'connect' ? 'connection' : phase === 'headers' ? 'response head' : 'body progress'} within ${ms} ms`);
  }
}

/**
 * An upstream sent a response head or chunked body that breaks RFC 9112;
 * forwarding a guess could desynchronise the connection, so it is refused.
 */
export class UpstreamResponseError extends AludelError {
  constructor(problem: string, remedy = 'fix the upstream application or its server so that it sends valid HTTP/1.1 (RFC 9112)') {
    super('ERR_UPSTREAM_BAD_RESPONSE', `invalid upstream response: ${problem}; ${remedy}`);
  }
}

/** The --cache directory cannot be created, read or written. */
export class CacheDirectoryError extends AludelError {
  constructor(dir: string, cause: unknown) {
    const code = (cause as { code?: string }).code ?? 'ERR_UNKNOWN';
    super('ERR_CACHE_DIR', `cache directory ${dir}: ${code} (${(cause as Error).message}); give --cache a directory this user can create and write, on a file system with room for --cache-size`, { cause });
  }
}

/** A client request that cannot be forwarded upstream as it is. */
export class InvalidRequestError extends AludelError {
  constructor(problem: string) {
    super('ERR_BAD_REQUEST', `bad request: ${problem}; the client must send a valid HTTP/1.1 request (RFC 9112)`);
  }
}

/**
 * A request Aludel understands the syntax of but does not implement: a
 * transfer coding other than chunked (RFC 9112 §6.1: 501), or an HTTP major
 * version other than 1 on an HTTP/1.x connection (RFC 9110 §15.6.6: 505).
 */
export class NotImplementedRequestError extends AludelError {
  constructor(readonly status: 501 | 505, problem: string) {
    super(status === 501 ? 'ERR_NOT_IMPLEMENTED' : 'ERR_HTTP_VERSION', `${problem}; the client must send HTTP/1.1 with no transfer coding but chunked`);
  }
}

/** A request body (chunked, so its size was unknown up front) went past --max-body-size. */
export class BodyTooLargeError extends AludelError {
  constructor(max: number) {
    super('ERR_BODY_TOO_LARGE', `request body over the ${max}-byte limit (--max-body-size)`);
  }
}

/** The client closed its connection while its request was still being proxied. */
export class ClientGoneError extends AludelError {
  constructor() {
    super('ERR_CLIENT_GONE', 'the client closed the connection before the response was complete');
  }
}

/**
 * The client took nothing for --idle-timeout while a response was being
 * sent, and Aludel closed its connection (HTTP/1.1) or reset its stream
 * (HTTP/2), as nginx's send_timeout does ("client timed out"). Not the
 * client closing: its access-log line says which.
 */
export class ClientTimeoutError extends AludelError {
  constructor(ms: number) {
    super('ERR_CLIENT_TIMEOUT', `no progress for ${ms} ms (--idle-timeout: a client that took no data): Aludel closed it, as nginx's send_timeout does`);
  }
}

/**
 * The client's request body ended short of the whole (an HTTP/2 stream it
 * reset mid-body, fewer bytes than its content-length): the client left mid-request.
 */
export class RequestBodyCutError extends ClientGoneError {
  constructor(got: number, declared: number | null) {
    super();
    this.message = `the client ended its request body after ${got} bytes${declared !== null ? ` of ${declared}` : ''}, without finishing it`;
  }
}

/**
 * A cache purge left files on disk that unlink(2) refused (EROFS, EACCES):
 * the entries left the index, so `who` no longer serves them, but a restart
 * would. The error of PURGE (cache-layer.ts) and of the admin listener's
 * POST /purge (admin-server.ts).
 */
export class PurgeIncompleteError extends AludelError {
  constructor(who: 'this process' | 'the workers') {
    super('ERR_PURGE_INCOMPLETE', `the stored files could not be deleted: ${who} no longer serve${who === 'this process' ? 's' : ''} them, but they are still on disk and a restart would serve them again; fix the cache directory and purge again`);
  }
}

/** aludel run found no preload library: the native build did not run or failed. */
export class PreloadMissingError extends AludelError {
  constructor(file: string) {
    super('ERR_PRELOAD_MISSING', `the preload library ${file} is missing; build it with npm run build:native (needs a C compiler)`);
  }
}
