/**
 * The upstream behind `aludel tcp` in the fuzz runs: echoes every byte back
 * and counts what it received, so the client can check the tunnel is byte
 * exact both ways and the run can check nothing was lost or invented.
 */
import net from 'node:net';

export interface EchoOrigin {
  port: number;
  counts: { bytes: number; connections: number; open: number };
  stop(): Promise<void>;
}

export async function startEchoOrigin(): Promise<EchoOrigin> {
  const sockets = new Set<net.Socket>();
  const counts = { bytes: 0, connections: 0, open: 0 };
  const server = net.createServer((sock) => {
    counts.connections++;
    counts.open++;
    sockets.add(sock);
    sock.once('close', () => {
      counts.open--;
      sockets.delete(sock);
    });
    sock.on('error', () => sock.destroy());
    sock.on('data', (d: Buffer) => (counts.bytes += d.length));
    // pipe() ends our side when the tunnel half-closes, so the close travels back.
    sock.pipe(sock);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    counts,
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
