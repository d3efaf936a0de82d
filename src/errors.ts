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
