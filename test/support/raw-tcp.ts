/** Plain-TCP twin of raw-http.ts's rawTls: bytes written verbatim, everything read until the server closes. */
import net from 'node:net';

/** Sends `request` to 127.0.0.1:port and collects all the server sends until it closes; rejects on timeout or error. */
export function rawTcp(port: number, request: string | Buffer, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = net.connect({ host: '127.0.0.1', port }, () => sock.write(request));
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`rawTcp: no close within ${timeoutMs} ms; got ${Buffer.concat(chunks).length} bytes`));
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
