/**
 * An HTTP/2 stream whose client never opens its flow-control window (RFC
 * 9113 §5.2), while other streams on the same session keep being served:
 * what `--idle-timeout` must still reset (node's per-stream timer counts any
 * byte its session sends as that stream's progress).
 */
import http2 from 'node:http2';
import { waitUntil } from './wait.js';

/**
 * Requests `path` on `session` and never reads its body past the first
 * window, while `small()` runs every 100 ms. Resolves with the stream's
 * RST_STREAM code once it closes, and how many of the small requests
 * succeeded meanwhile.
 */
export async function stalledBesideOthers(session: http2.ClientHttp2Session, path: string, small: () => Promise<boolean>): Promise<{ rstCode: number; served: number }> {
  let served = 0;
  const ticker = setInterval(() => {
    small().then((ok) => { if (ok) served++; }, () => undefined);
  }, 100);
  try {
    const big = session.request({ ':path': path });
    big.on('error', () => undefined);
    // Never read: no WINDOW_UPDATE for this stream past its first 65,535 bytes.
    big.on('response', () => big.pause());
    let closedWith: number | null = null;
    big.on('close', () => (closedWith = big.rstCode));
    await waitUntil(() => closedWith !== null, 20_000);
    return { rstCode: closedWith!, served };
  } finally {
    clearInterval(ticker);
  }
}
