/**
 * A child process (fork) running createKtlsServer() with a tiny responder, for
 * the certificate tests. Which engine it gets is the parent's choice of
 * environment (ALUDEL_LIBSSL=/nonexistent forces node:tls), as for the CLI.
 *
 * argv[2]: JSON {certificates, offload?, alpn?, minVersion?, maxVersion?}
 * To the parent: {type:'ready', port, engine, ktls} | {type:'error', message, code}
 *   | {type:'conn', id, tls} per handshake | {type:'reconfigured', error?}
 * From the parent: {type:'reconfigure', options} | {type:'close'}
 *
 * Responder: the first line "big N" gets N bytes of patternBlock() repeated
 * (then end); anything else gets "ok <servername>\n" (then end).
 */
import { createKtlsServer, type CreateServerOptions } from '../../src/tls/create-server.js';
import type { SecureConnection, TlsOptions } from '../../src/tls/types.js';
import { pino } from 'pino';
import { patternBlock } from './sni-pattern.js';

function send(msg: Record<string, unknown>): void {
  process.send?.(msg);
}

const options = JSON.parse(process.argv[2] ?? '{}') as CreateServerOptions;
let server;
try {
  server = createKtlsServer({ ...options, handshakeTimeoutMs: 60_000, log: pino({ level: 'info' }, pino.destination(2)) });
} catch (err) {
  send({ type: 'error', message: (err as Error).message, code: (err as { code?: string }).code ?? null });
  process.disconnect?.();
  process.exit(0);
}
const srv = server;
const block = patternBlock();

function respond(conn: SecureConnection): void {
  let head = '';
  const onData = (chunk: Buffer): void => {
    head += chunk.toString('latin1');
    const nl = head.indexOf('\n');
    if (nl < 0) return;
    conn.off('data', onData);
    const m = /^big (\d+)/.exec(head.slice(0, nl));
    if (!m) {
      conn.end(`ok ${conn.tls.servername ?? '-'}\n`);
      return;
    }
    let left = Number(m[1]);
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, block.length);
        left -= n;
        if (!conn.write(n === block.length ? block : block.subarray(0, n))) {
          conn.once('drain', pump);
          return;
        }
      }
      conn.end();
    };
    pump();
  };
  conn.on('data', onData);
  conn.on('error', () => conn.destroy());
}

srv.on('secureConnection', (conn: SecureConnection) => {
  send({ type: 'conn', id: conn.id, tls: conn.tls });
  respond(conn);
});
srv.on('tlsClientError', () => {});

process.on('message', (msg: { type: string; options?: TlsOptions }) => {
  if (msg.type === 'reconfigure') {
    try {
      srv.reconfigure(msg.options!);
      // With --expose-gc (the tests fork it so): drop the old contexts' JavaScript objects now,
      // so connections still running on them prove they hold their own references.
      (globalThis as { gc?: () => void }).gc?.();
      send({ type: 'reconfigured' });
    } catch (err) {
      send({ type: 'reconfigured', error: { message: (err as Error).message, code: (err as { code?: string }).code ?? null } });
    }
  } else if (msg.type === 'close') {
    void srv.close().then(() => process.exit(0));
  }
});

const a = await srv.listen({ host: '127.0.0.1', port: 0 });
send({ type: 'ready', port: a.port, engine: srv.offload.engine, ktls: srv.offload.ktls });
