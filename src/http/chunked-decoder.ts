/**
 * Streaming decoder of a `Transfer-Encoding: chunked` body (RFC 9112 §7.1).
 * Pure: the caller pushes whatever bytes its socket read returned, split
 * anywhere, and gets the chunk data back as subarrays of those same buffers.
 *
 * A byte-at-a-time state machine for the framing (size lines, CRLFs,
 * trailers), which is a few bytes per chunk; chunk data is handed on in one
 * slice per push without being looked at. It is strict for the same reason as
 * the head parser: where this decoder and the upstream disagree on where the
 * body ends, the rest of the connection is misread.
 * - chunk-size is 1*HEXDIG, at most maxChunkSizeDigits digits and 2^53-1;
 *   no "0x", sign or leading whitespace.
 * - BWS before ";" is accepted, since the chunk-ext grammar (§7.1.1) allows
 *   it; whitespace not followed by an extension ("1 \r\n") is not.
 * - Extensions are skipped unparsed, but only bytes that may appear in a
 *   token or quoted-string (no control byte other than HTAB) are accepted, so
 *   a CR or LF inside one is never mistaken for the end of the line; their
 *   total per body is bounded as node and hyper bound them after
 *   CVE-2024-22019 (a peer sending endless extensions with no data).
 * - Every line ends in CRLF; the CRLF after chunk data is required.
 * - Trailer fields (§7.1.2) are checked as header fields and discarded: a
 *   reverse proxy may drop them, and node's re-framing would not carry them.
 * After a throw the decoder is unusable; the connection must be closed.
 */
import { UpstreamResponseError } from '../errors.js';
import { isFieldValueByte, isOws, isTchar } from '../text/char-classes.js';

export interface ChunkedLimits {
  /** Hex digits in one chunk-size, leading zeros included (default 16). */
  maxChunkSizeDigits?: number;
  /** Bytes of the trailer section, its final CRLF included (default 16 KiB). */
  maxTrailerSize?: number;
  /** Bytes of chunk extensions (and BWS before them) in the whole body (default 16 KiB). */
  maxExtensionSize?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const SEMICOLON = 0x3b;
const COLON = 0x3a;

// Decoder states.
const SIZE_START = 0; // expecting the first hex digit of a chunk-size
const SIZE = 1; // in the hex digits
const SIZE_BWS = 2; // whitespace after the digits, which must lead to ";"
const EXTENSION = 3; // after ";", up to the CR
const SIZE_LF = 4; // CR of the size line seen
const DATA = 5;
const DATA_CR = 6;
const DATA_LF = 7;
const TRAILER_LINE = 8; // start of a trailer field line, or of the final CRLF
const TRAILER_NAME = 9;
const TRAILER_VALUE = 10;
const TRAILER_LF = 11;
const END_LF = 12; // CR of the final empty line seen
const DONE = 13;

/** HEXDIG value by byte, -1 for anything else. */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i;
}

export class ChunkedDecoder {
  private readonly maxChunkSizeDigits: number;
  private readonly maxTrailerSize: number;
  private readonly maxExtensionSize: number;
  private state = SIZE_START;
  private digits = 0;
  /** The chunk-size being read, then the data bytes of the chunk still to come. */
  private remaining = 0;
  private extensionBytes = 0;
  private trailerBytes = 0;

  constructor(limits: ChunkedLimits = {}) {
    this.maxChunkSizeDigits = limits.maxChunkSizeDigits ?? 16;
    this.maxTrailerSize = limits.maxTrailerSize ?? 16 * 1024;
    this.maxExtensionSize = limits.maxExtensionSize ?? 16 * 1024;
  }

  /** True once the last chunk, the trailers and the final CRLF have been read. */
  get done(): boolean {
    return this.state === DONE;
  }

  /**
   * Decodes as much of `buf` as belongs to the body, passing chunk data to
   * `onData` as subarrays of `buf` (valid only as long as `buf` is). Returns
   * the bytes consumed: fewer than buf.length only when the body ended inside
   * it, the rest being the next response on a kept-alive connection.
   */
  push(buf: Buffer, onData: (slice: Buffer) => void): number {
    let i = 0;
    while (i < buf.length && this.state !== DONE) {
      if (this.state === DATA) {
        const end = Math.min(buf.length, i + this.remaining);
        this.remaining -= end - i;
        if (this.remaining === 0) this.state = DATA_CR;
        onData(buf.subarray(i, end));
        i = end;
        continue;
      }
      this.step(buf[i]!);
      i++;
    }
    return i;
  }

  /** Chunk data bytes owed before the next framing byte (0 when not inside chunk data). */
  get dataPending(): number {
    return this.state === DATA ? this.remaining : 0;
  }

  /**
   * Framing only: consumes size lines, CRLFs and trailers from `buf` and stops
   * at the first chunk-data byte or the end of the body. For a caller that
   * moves chunk data itself (splice) and reports it with dataMoved(). Returns
   * the bytes consumed.
   */
  pushFraming(buf: Buffer): number {
    let i = 0;
    while (i < buf.length && this.state !== DONE && this.state !== DATA) this.step(buf[i++]!);
    return i;
  }

  /** The caller moved `n` bytes of the current chunk's data. */
  dataMoved(n: number): void {
    if (this.state !== DATA || n > this.remaining) throw new RangeError(`dataMoved(${n}) with ${this.dataPending} data bytes pending`);
    this.remaining -= n;
    if (this.remaining === 0) this.state = DATA_CR;
  }

  private step(byte: number): void {
    switch (this.state) {
      case SIZE_START:
        if (HEX[byte]! < 0) throw invalid(`chunk size starts with ${describe(byte)} instead of a hex digit`);
        this.remaining = HEX[byte]!;
        this.digits = 1;
        this.state = SIZE;
        return;
      case SIZE: {
        const digit = HEX[byte]!;
        if (digit >= 0) {
          if (++this.digits > this.maxChunkSizeDigits) throw invalid(`chunk size longer than ${this.maxChunkSizeDigits} hex digits`);
          this.remaining = this.remaining * 16 + digit;
          if (this.remaining > Number.MAX_SAFE_INTEGER) throw invalid('chunk size exceeds 2^53-1');
        } else if (byte === CR) {
          this.state = SIZE_LF;
        } else if (byte === SEMICOLON) {
          this.countExtension();
          this.state = EXTENSION;
        } else if (isOws(byte)) {
          this.countExtension();
          this.state = SIZE_BWS;
        } else {
          throw invalid(`${describe(byte)} in a chunk size`);
        }
        return;
      }
      case SIZE_BWS:
        if (!isOws(byte) && byte !== SEMICOLON) throw invalid('whitespace after a chunk size not followed by an extension');
        this.countExtension();
        if (byte === SEMICOLON) this.state = EXTENSION;
        return;
      case EXTENSION:
        if (byte === CR) {
          this.state = SIZE_LF;
          return;
        }
        if (!isFieldValueByte(byte)) throw invalid(`${describe(byte)} in a chunk extension`);
        this.countExtension();
        return;
      case SIZE_LF:
        if (byte !== LF) throw invalid('chunk size line not ended by CRLF');
        if (this.remaining > 0) {
          this.state = DATA;
        } else {
          // last-chunk: the trailer section follows (§7.1.2).
          this.state = TRAILER_LINE;
        }
        return;
      case DATA_CR:
        if (byte !== CR) throw invalid('chunk data not followed by CRLF (chunk size wrong?)');
        this.state = DATA_LF;
        return;
      case DATA_LF:
        if (byte !== LF) throw invalid('chunk data not followed by CRLF (chunk size wrong?)');
        this.state = SIZE_START;
        return;
      default:
        this.trailerStep(byte);
    }
  }

  /** trailer-section = *( field-line CRLF ), then the final CRLF (§7.1, §7.1.2). */
  private trailerStep(byte: number): void {
    if (++this.trailerBytes > this.maxTrailerSize) {
      throw new UpstreamResponseError(`chunked trailers larger than ${this.maxTrailerSize} bytes`, 'make the upstream send smaller trailers (they are discarded anyway)');
    }
    switch (this.state) {
      case TRAILER_LINE:
        if (byte === CR) this.state = END_LF;
        else if (isTchar(byte)) this.state = TRAILER_NAME;
        else throw invalid(`trailer line starts with ${describe(byte)}`);
        return;
      case TRAILER_NAME:
        if (byte === COLON) this.state = TRAILER_VALUE;
        else if (!isTchar(byte)) throw invalid(`${describe(byte)} in a trailer field name`);
        return;
      case TRAILER_VALUE:
        if (byte === CR) this.state = TRAILER_LF;
        else if (!isFieldValueByte(byte)) throw invalid(`${describe(byte)} in a trailer field value`);
        return;
      case TRAILER_LF:
        if (byte !== LF) throw invalid('trailer line not ended by CRLF');
        this.state = TRAILER_LINE;
        return;
      case END_LF:
        if (byte !== LF) throw invalid('chunked body not ended by CRLF');
        this.state = DONE;
        return;
    }
  }

  private countExtension(): void {
    if (++this.extensionBytes > this.maxExtensionSize) throw invalid(`chunk extensions longer than ${this.maxExtensionSize} bytes in one body`);
  }
}

function invalid(problem: string): UpstreamResponseError {
  return new UpstreamResponseError(`chunked body: ${problem}`);
}

function describe(byte: number): string {
  return byte > 0x20 && byte < 0x7f ? JSON.stringify(String.fromCharCode(byte)) : `byte 0x${byte.toString(16).padStart(2, '0')}`;
}
