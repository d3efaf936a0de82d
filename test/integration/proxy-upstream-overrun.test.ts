/**
 * An upstream that sends more than it framed: after each answer's body
 * (Content-Length, or chunked up to its last chunk) the origin writes a
 * whole second answer nobody asked for, "EVIL!", in the same write. The
 * proxy's body readers stop at the framing's end (RFC 9112 §6.3), so those
 * bytes wait in the upstream socket; the connection went back to the pool
 * with them, and the next request sent on it, another client's, got "EVIL!"
 * as its answer (358 of 1,920 answers, 32 clients at once, before the fix).
 * Each answer must be the body asked for, the connection must not be reused
 * (nginx: "upstream sent more data than specified"), and the log must say why.
 * Sizes: 1 KiB (read with the head), 100 KiB (the copy path: userspace TLS),
 * both with Content-Length and chunked; plain upstream and TLS upstream.
 */
import { after, before } from 'node:test';
import { CLIENTS, EACH, describeOverrun, startOverrun } from '../support/overrun-origin.js';

let fronts: Awaited<ReturnType<typeof startOverrun>>;

before(async () => {
  fronts = await startOverrun('userspace');
});

after(async () => {
  await fronts?.stop();
});

describeOverrun('aludel proxy', () => fronts, { clients: CLIENTS, each: EACH, timeoutMs: 120_000 });
