/**
 * Structured Field Values for HTTP (RFC 8941): the Dictionary type, which
 * RFC 9213 §2.2 makes the syntax of targeted cache-control fields
 * (`CDN-Cache-Control: max-age=60, no-store`). Pure; the parsing algorithms
 * of RFC 8941 §4.2, strict as §4.2 demands: any error fails the whole field
 * (the caller then ignores it, RFC 9213 §2.2), nothing is guessed.
 */
import { isTchar } from '../text/char-classes.js';

/** sf-integer and sf-decimal are numbers, sf-string a string, sf-token and sf-binary wrapped, sf-boolean a boolean. */
export type BareItem = number | string | boolean | { token: string } | { binary: string };
export type Parameters = ReadonlyMap<string, BareItem>;
export interface Item {
  value: BareItem;
  params: Parameters;
}
export interface InnerList {
  items: Item[];
  params: Parameters;
}
export type Dictionary = ReadonlyMap<string, Item | InnerList>;

class Invalid extends Error {}

/**
 * Every field line of a Dictionary field, combined as RFC 8941 §4.2 says
 * (joined with commas, in order); null when the result does not parse. An
 * empty field is an empty Dictionary.
 */
export function parseDictionary(fieldValues: readonly string[]): Dictionary | null {
  const p = new Parser(fieldValues.join(','));
  try {
    return p.dictionary();
  } catch (err) {
    if (err instanceof Invalid) return null;
    throw err;
  }
}

const LCALPHA = /[a-z]/;
const ALPHA = /[A-Za-z]/;
const DIGIT = /[0-9]/;
const BASE64 = /[A-Za-z0-9+/=]/;

class Parser {
  private i = 0;

  constructor(private readonly s: string) {}

  /** §4.2: leading and trailing SP removed; §4.2.2: members until the input ends, a trailing comma is an error. */
  dictionary(): Dictionary {
    this.skipSp();
    let end = this.s.length;
    while (end > this.i && this.s[end - 1] === ' ') end--;
    const out = new Map<string, Item | InnerList>();
    while (this.i < end) {
      const key = this.key();
      let member: Item | InnerList;
      if (this.s[this.i] === '=') {
        this.i++;
        member = this.s[this.i] === '(' ? this.innerList() : { value: this.bareItem(), params: this.parameters() };
      } else {
        member = { value: true, params: this.parameters() };
      }
      // §4.2.2: a key given again overwrites the earlier value.
      out.set(key, member);
      this.skipOws();
      if (this.i >= end) break;
      if (this.s[this.i++] !== ',') throw new Invalid();
      this.skipOws();
      if (this.i >= end) throw new Invalid();
    }
    return out;
  }

  /** §4.2.3.3: ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ). */
  private key(): string {
    const start = this.i;
    const c = this.s[this.i];
    if (c === undefined || !(LCALPHA.test(c) || c === '*')) throw new Invalid();
    this.i++;
    while (this.i < this.s.length && /[a-z0-9_\-.*]/.test(this.s[this.i]!)) this.i++;
    return this.s.slice(start, this.i);
  }

  /** §4.2.3.2 */
  private parameters(): Parameters {
    const out = new Map<string, BareItem>();
    while (this.s[this.i] === ';') {
      this.i++;
      this.skipSp();
      const key = this.key();
      let value: BareItem = true;
      if (this.s[this.i] === '=') {
        this.i++;
        value = this.bareItem();
      }
      out.set(key, value);
    }
    return out;
  }

  /** §4.2.1.2 */
  private innerList(): InnerList {
    this.i++;
    const items: Item[] = [];
    for (;;) {
      this.skipSp();
      if (this.s[this.i] === ')') {
        this.i++;
        return { items, params: this.parameters() };
      }
      items.push({ value: this.bareItem(), params: this.parameters() });
      const c = this.s[this.i];
      if (c !== ' ' && c !== ')') throw new Invalid();
    }
  }

  /** §4.2.3.1 */
  private bareItem(): BareItem {
    const c = this.s[this.i];
    if (c === undefined) throw new Invalid();
    if (c === '-' || DIGIT.test(c)) return this.number();
    if (c === '"') return this.string();
    if (c === ':') return this.binary();
    if (c === '?') return this.boolean();
    if (ALPHA.test(c) || c === '*') return this.token();
    throw new Invalid();
  }

  /** §4.2.4: at most 15 integer digits; a decimal has at most 12 before the dot and 1 to 3 after it. */
  private number(): number {
    const m = /^(-?)(\d+)(?:\.(\d*))?/.exec(this.s.slice(this.i, this.i + 20));
    if (m === null) throw new Invalid();
    const [all, , whole, frac] = m;
    if (frac === undefined ? whole!.length > 15 : whole!.length > 12 || frac.length < 1 || frac.length > 3) throw new Invalid();
    this.i += all.length;
    return Number(all);
  }

  /** §4.2.5: printable ASCII; only `\"` and `\\` escapes. */
  private string(): string {
    let out = '';
    this.i++;
    while (this.i < this.s.length) {
      const c = this.s[this.i++]!;
      if (c === '"') return out;
      if (c === '\\') {
        const e = this.s[this.i++];
        if (e !== '"' && e !== '\\') throw new Invalid();
        out += e;
      } else {
        const code = c.charCodeAt(0);
        if (code < 0x20 || code > 0x7e) throw new Invalid();
        out += c;
      }
    }
    throw new Invalid();
  }

  /** §4.2.6: ( ALPHA / "*" ) *( tchar / ":" / "/" ). */
  private token(): { token: string } {
    const start = this.i++;
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (!(isTchar(c.charCodeAt(0)) || c === ':' || c === '/')) break;
      this.i++;
    }
    return { token: this.s.slice(start, this.i) };
  }

  /** §4.2.7: base64 between colons (its content is not needed here, only its validity as syntax). */
  private binary(): { binary: string } {
    const start = ++this.i;
    while (this.i < this.s.length && this.s[this.i] !== ':') {
      if (!BASE64.test(this.s[this.i]!)) throw new Invalid();
      this.i++;
    }
    if (this.i >= this.s.length) throw new Invalid();
    return { binary: this.s.slice(start, this.i++) };
  }

  /** §4.2.8 */
  private boolean(): boolean {
    const c = this.s[this.i + 1];
    if (c !== '0' && c !== '1') throw new Invalid();
    this.i += 2;
    return c === '1';
  }

  private skipSp(): void {
    while (this.s[this.i] === ' ') this.i++;
  }

  private skipOws(): void {
    while (this.s[this.i] === ' ' || this.s[this.i] === '\t') this.i++;
  }
}
