/**
 * The connection's direct reads and the lane on them, on userspace OpenSSL
 * (test/support/direct-read.ts; test/ktls/direct-read-ktls.test.ts runs the
 * same with kTLS RX).
 */
import { directReadTests } from '../support/direct-read.js';

directReadTests('userspace', 'TLSv1.3', false);
directReadTests('userspace', 'TLSv1.2', false);
