/**
 * HTTP-01 (RFC 8555 §8.3): the CA fetches
 * http://NAME/.well-known/acme-challenge/TOKEN on port 80 and expects the key
 * authorization as the body. Answered by the plain-HTTP companion listener
 * (--redirect-http) only while a challenge is pending, and only for its exact
 * token; every other request there keeps getting its redirect.
 */

const PREFIX = '/.well-known/acme-challenge/';
/** RFC 8555 §8.3: the token is base64url (RFC 4648 §5); nothing else can match. */
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

export class Http01Responder {
  private readonly pending = new Map<string, string>();

  add(token: string, keyAuthorization: string): void {
    this.pending.set(token, keyAuthorization);
  }

  remove(token: string): void {
    this.pending.delete(token);
  }

  /** The body to answer a GET of `url` with, or null when it is no pending challenge. */
  answer(url: string | undefined): string | null {
    if (this.pending.size === 0 || url === undefined || !url.startsWith(PREFIX)) return null;
    const token = url.slice(PREFIX.length);
    return TOKEN.test(token) ? (this.pending.get(token) ?? null) : null;
  }
}
