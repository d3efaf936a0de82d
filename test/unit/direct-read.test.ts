/**
 * The connection's direct reads and the lane on them, on userspace OpenSSL
 * (test/support/direct-read.ts; test/ktls/direct-read-ktls.test.ts runs the
 * same with kTLS RX).
 */
import type { Native } from '../../src/native/binding.js';
import { directReadTests } from '../support/direct-read.js';

directReadTests('userspace', 'TLSv1.3', false);
directReadTests('userspace', 'TLSv1.2', false);

/**
 * An addon from before readScratch / writeScratch (the buffer passed with
 * each read and write, hasPending asked apart): the connection falls back
 * to read, write and hasPending. The addon's functions are read-only
 * properties: inherit them, shadow the three.
 */
directReadTests('userspace', 'TLSv1.3', false, (real: Native) => {
  const older = Object.create(real) as Native;
  for (const name of ['scratchSet', 'readScratch', 'writeScratch']) Object.defineProperty(older, name, { value: undefined });
  return older;
});
