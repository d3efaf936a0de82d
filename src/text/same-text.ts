/**
 * a === b for strings, cheaper for values taken from a request's head: those
 * of 13 characters or more are V8 sliced strings (views of the head's text),
 * which V8's StringEqual builtin does not compare itself but hands to the
 * runtime (Runtime_StringEqual, String::SlowEquals on node 20); indexOf's
 * builtin reads sliced strings in place (bench/request-cost.ts). Of two
 * strings of one length, the only place one can start in the other is 0,
 * and only when they are equal.
 */
export function sameText(a: string, b: string): boolean {
  return a.length === b.length && a.indexOf(b) === 0;
}
