/** One HTTPS request by curl, read as status, final header fields and body text (interim 1xx heads skipped). */
import assert from 'node:assert/strict';
import { curl } from './clients.js';

export interface CurlAnswer {
  status: number;
  /** The final response's fields: lowercase names, repeated ones joined with ", ". */
  headers: Record<string, string>;
  body: string;
}

/** GET https://localhost:PORT/urlPath trusting `caFile`, with curl's `extra` flags before the URL. */
export async function curlAnswer(port: number, caFile: string, urlPath: string, ...extra: string[]): Promise<CurlAnswer> {
  const r = await curl(['--cacert', caFile, '-sS', '-D', '-', ...extra, `https://localhost:${port}${urlPath}`], 30_000);
  assert.equal(r.code, 0, `curl ${urlPath}: ${r.stderr}`);
  const blocks = r.stdout.toString('latin1').split('\r\n\r\n');
  let last = 0;
  for (let i = 0; i < blocks.length; i++) if (blocks[i]!.startsWith('HTTP/')) last = i;
  const { status, headers } = parseHead(blocks[last]!);
  return { status, headers, body: blocks.slice(last + 1).join('\r\n\r\n') };
}

/** A response head as curl -D prints it: the status code and the fields, lowercase names, repeated ones joined with ", ". */
export function parseHead(head: string): { status: number; headers: Record<string, string> } {
  const [statusLine, ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    const k = line.slice(0, i).toLowerCase();
    const v = line.slice(i + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  return { status: Number(statusLine?.split(' ')[1]), headers };
}
