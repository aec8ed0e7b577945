/**
 * How the gateway's proxies answer the sandbox: every status line and header block goes through here, so that
 * nothing an upstream server, a CGI or the sandbox sends can make an answer throw inside a callback (which would end
 * the worker process), and every refusal is one sentence the sandbox's program can print.
 */
import type * as http from 'node:http';

/**
 * The status to pass on from an upstream answer (a server the sandbox may choose, or a CGI): itself when it is a
 * real HTTP status (100..599), else undefined (the proxy answers 502).
 */
export function upstreamStatus(status: number | undefined): number | undefined {
  return status !== undefined && Number.isInteger(status) && status >= 100 && status <= 599 ? status : undefined;
}

/**
 * Starts an answer with `status` and `headers` from upstream; false (and the answer is a 502, or the connection is
 * ended when an answer had started) when either is not one Node can send, instead of throwing.
 */
export function startAnswer(res: http.ServerResponse, status: number | undefined, headers: http.OutgoingHttpHeaders): boolean {
  const valid = upstreamStatus(status);
  if (valid === undefined) {
    refuse(res, 502, `the upstream server answered with an invalid HTTP status (${String(status).slice(0, 12)})`);
    return false;
  }
  try {
    res.writeHead(valid, headers);
    return true;
  } catch (err) {
    refuse(res, 502, `the upstream server's answer could not be passed on: ${(err as Error).message}`);
    return false;
  }
}

/**
 * Answers `status` with `tandem: <message>` as plain text; when an answer has already started, ends the connection
 * instead (the client sees a cut answer, not a wrong one); when it is complete or the connection gone, does nothing.
 * Never throws.
 */
export function refuse(res: http.ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  if (res.writableEnded || res.destroyed) return;
  if (res.headersSent) return void res.destroy();
  try {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
    res.end(`tandem: ${message}\n`);
  } catch {
    res.destroy();
  }
}

/** A raw HTTP/1.1 answer for a socket no longer managed by Node's HTTP server (a CONNECT request's). */
export function rawAnswer(status: number, reason: string, message?: string): string {
  if (message === undefined) return `HTTP/1.1 ${status} ${reason}\r\n\r\n`;
  const body = `tandem: ${message}\n`;
  return (
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}
