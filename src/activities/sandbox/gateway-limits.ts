/**
 * The bounds of a session's gateway: how many connections, requests and host processes a sandbox can hold on the
 * worker host through its proxies, and how long any of them may sit idle. A sandbox is hostile (DESIGN rule 13):
 * without these, it could open connections or start `git http-backend` processes until the worker host runs out.
 * The defaults are generous for real git and package-manager traffic; tests lower them to see them act.
 */
import type * as http from 'node:http';

/** Bounds of one session's proxies (each applies per session). */
export interface GatewayLimits {
  /** Open connections to the git proxy's socket: git uses one or two at a time. */
  gitConnections: number;
  /** Requests the git proxy works on at once (HTTP/1.1 pipelining can put many on one connection). */
  gitRequests: number;
  /** `git http-backend` processes of local repositories at once; beyond, a 503. */
  cgiProcesses: number;
  /** A `git http-backend` that moved no byte either way for this long is killed (its client stopped reading). */
  cgiIdleMs: number;
  /** A `git http-backend` that has run this long is killed, moving or not. */
  cgiMaxMs: number;
  /** Open connections to the egress proxy's socket (tunnels included): a browser or pip opens tens, not thousands. */
  egressConnections: number;
  /** Upstream requests and tunnels of the egress proxy at once; beyond, a 503. */
  egressRequests: number;
  /** A CONNECT tunnel with no byte either way for this long is closed. */
  tunnelIdleMs: number;
  /** Connecting to an upstream host (after DNS) may take this long. */
  connectMs: number;
  /** An HTTP connection to either proxy with no byte either way for this long is closed. */
  idleMs: number;
  /** A request's headers must have come this long after it began (Node's `headersTimeout`). */
  headersMs: number;
  /** A whole request (a push's body included) must have come in this long (Node's `requestTimeout`). */
  requestMs: number;
  /** Denials held between two tool calls; more are counted (`EgressDenial.dropped`). */
  denials: number;
}

const MINUTE = 60_000;

/** The bounds a worker uses unless its settings say otherwise. */
export const DEFAULT_GATEWAY_LIMITS: Readonly<GatewayLimits> = {
  gitConnections: 32,
  gitRequests: 32,
  cgiProcesses: 4,
  cgiIdleMs: 5 * MINUTE,
  cgiMaxMs: 60 * MINUTE,
  egressConnections: 256,
  egressRequests: 256,
  tunnelIdleMs: 5 * MINUTE,
  connectMs: 30_000,
  idleMs: 5 * MINUTE,
  headersMs: 60_000,
  requestMs: 60 * MINUTE,
  denials: 100,
};

/** How many of a bounded thing are in use, up to `max`: `take()` is false when none is left. */
export class Allowance {
  private used = 0;

  constructor(readonly max: number) {}

  /** Takes one, or returns false when all are in use. */
  take(): boolean {
    if (this.used >= this.max) return false;
    this.used++;
    return true;
  }

  /** A release function for the one just taken, safe to call more than once. */
  releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.used--;
    };
  }

  /** How many are in use. */
  get inUse(): number {
    return this.used;
  }
}

/**
 * Applies the bounds to a proxy's HTTP server: at most `connections` open connections (more are closed at once), and
 * the idle, header and request timeouts.
 */
export function bound(server: http.Server, limits: GatewayLimits, connections: number): void {
  server.maxConnections = connections;
  server.timeout = limits.idleMs; // a connection with no byte either way for this long is destroyed
  server.headersTimeout = limits.headersMs;
  server.requestTimeout = limits.requestMs;
}
