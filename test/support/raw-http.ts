/** HTTP/1.1 without a client library: bytes written verbatim over TLS, responses split by hand. */
import net from 'node:net';
import tls from 'node:tls';

/** Splits a raw HTTP/1.1 response into head (status line + headers) and the bytes after the blank line. */
export function splitHttp(raw: Buffer): { status: number; headers: Record<string, string>; body: Buffer } {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no header block in ${JSON.stringify(raw.subarray(0, 200).toString('latin1'))}`);
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status, headers, body: raw.subarray(end + 4) };
}

/** The bodies of consecutive Content-Length responses in `raw` (pipelined answers), in order. */
export function pipelinedBodies(raw: Buffer): Buffer[] {
  const bodies: Buffer[] = [];
  for (let at = 0; at < raw.length;) {
    const end = raw.indexOf('\r\n\r\n', at, 'latin1');
    if (end < 0) break;
    const length = Number(/Content-Length: (\d+)/i.exec(raw.toString('latin1', at, end))?.[1]);
    bodies.push(raw.subarray(end + 4, end + 4 + length));
    at = end + 4 + length;
  }
  return bodies;
}

/** Writes `request` once connected and collects everything the server sends until it closes; rejects on timeout or error. */
function collectUntilClose(sock: net.Socket, connectEvent: 'connect' | 'secureConnect', request: string | Buffer, timeoutMs: number, label: string, halfClose = false): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    sock.once(connectEvent, () => (halfClose ? sock.end(request) : sock.write(request)));
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`${label}: no close within ${timeoutMs} ms; got ${Buffer.concat(chunks).length} bytes`));
    }, timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

/**
 * Sends `request` verbatim over a node:tls connection (trusting `ca`) and
 * collects everything the server sends until it closes; rejects on timeout.
 * `halfClose`: the client closes its side (close_notify, FIN) after the request.
 */
export function rawTls(port: number, ca: string, request: string | Buffer, timeoutMs = 10_000, options: tls.ConnectionOptions & { halfClose?: boolean } = {}): Promise<Buffer> {
  const { halfClose, ...tlsOptions } = options;
  return collectUntilClose(tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ...tlsOptions }), 'secureConnect', request, timeoutMs, 'rawTls', halfClose);
}

/** The plain-TCP twin of rawTls (for origins). */
export function rawTcp(port: number, request: string | Buffer, timeoutMs = 10_000): Promise<Buffer> {
  return collectUntilClose(net.connect({ host: '127.0.0.1', port }), 'connect', request, timeoutMs, 'rawTcp');
}

/**
 * Sends `request` over TLS, reads until `until(received)` holds, then drops
 * the connection (FIN, no close_notify) `dropAfterMs` later, as a client that
 * has its answer does; resolves with what was received. Rejects on timeout.
 */
export function rawTlsDropAfter(port: number, ca: string, request: string | Buffer, until: (received: Buffer) => boolean, dropAfterMs = 0, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => sock.write(request));
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`rawTlsDropAfter: condition not met within ${timeoutMs} ms; got ${Buffer.concat(chunks).length} bytes`));
    }, timeoutMs);
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      const got = Buffer.concat(chunks);
      if (!until(got)) return;
      clearTimeout(timer);
      sock.pause();
      setTimeout(() => {
        sock.destroy();
        resolve(got);
      }, dropAfterMs);
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * For a raw test origin: calls `onTarget` with the request target of each
 * request head as it arrives on `socket` (keep-alive and pipelining; heads
 * only, no bodies).
 */
export function onRequestTargets(socket: import('node:net').Socket, onTarget: (target: string) => void): void {
  let held = '';
  socket.on('error', () => undefined);
  socket.on('data', (d: Buffer) => {
    held += d.toString('latin1');
    for (let end = held.indexOf('\r\n\r\n'); end >= 0; end = held.indexOf('\r\n\r\n')) {
      const target = held.slice(0, held.indexOf('\r\n')).split(' ')[1] ?? '/';
      held = held.slice(end + 4);
      onTarget(target);
    }
  });
}

/** Listens on 127.0.0.1, port 0: the port the kernel gave. */
export async function listenLocal(server: import('node:net').Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as import('node:net').AddressInfo).port;
}
