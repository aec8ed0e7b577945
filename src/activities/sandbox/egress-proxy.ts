/**
 * The egress proxy of one session whose network policy is `limited` or `unrestricted`: an HTTP(S) proxy on a unix
 * socket that the sandbox reaches through its forwarder (`HTTP_PROXY`/`HTTPS_PROXY`). It lets through `CONNECT
 * host:port` tunnels and plain-HTTP absolute-URI requests to the allow-list's hosts (any host, when unrestricted),
 * when their address is on the internet (address-policy.ts: never the worker host, a private or link-local network,
 * cloud metadata, or a translation of one), and refuses the rest with a 403 and a record of the refusal (egress-denials.ts), reported
 * with the next tool result. Connections, tunnels and idle time are bounded (gateway-limits.ts), and nothing an
 * upstream server answers can throw out of a callback (http-answer.ts).
 */
import { lookup } from 'node:dns/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import type { EgressDenial, SandboxRef } from '../../shared/types.js';
import { hostAllowed, isInternalAddress } from './address-policy.js';
import { boundDenial, type DenialLog } from './egress-denials.js';
import { bound, Allowance, type GatewayLimits } from './gateway-limits.js';
import { rawAnswer, refuse, startAnswer } from './http-answer.js';

/** What the egress proxy reads of its session at each request, and where it records refusals. */
export interface EgressProxySession {
  readonly ref: SandboxRef;
  readonly denials: DenialLog;
}

/** A host name as the proxy's answers show it: bounded and without control characters, like a recorded denial. */
function shown(host: string): string {
  return boundDenial({ host, port: 0, method: '', at: '' }).host;
}

/** The egress proxy of one session. */
class EgressProxy {
  private readonly active: Allowance;

  constructor(
    private readonly s: EgressProxySession,
    private readonly hostMap: Record<string, string> | undefined,
    private readonly limits: GatewayLimits,
  ) {
    this.active = new Allowance(limits.egressRequests);
  }

  private deny(host: string, port: number, method: string): void {
    this.s.denials.record({ host, port, method, at: new Date().toISOString() } satisfies EgressDenial);
  }

  /** Whether the policy lets the name through; where it leads is checked after (`resolve`), for every policy. */
  private allowed(host: string, port: number, method: string): boolean {
    const network = this.s.ref.config.network;
    if (network?.policy === 'unrestricted') return true;
    if (network?.policy === 'limited' && hostAllowed(network.allowed_hosts ?? [], host, port)) return true;
    this.deny(host, port, method);
    return false;
  }

  /**
   * Where an allowed name leads: the host map's fixed address, else the name's DNS answer, which must not be the
   * worker's host or a private network (a name under someone else's control could point there). Undefined: refused,
   * and the refusal recorded as a denial.
   */
  private async resolve(host: string, port: number, method: string): Promise<string | undefined> {
    const mapped = this.hostMap?.[host.toLowerCase()];
    if (mapped) return mapped;
    const addresses = await lookup(host, { all: true }).catch(() => []);
    if (addresses.length > 0 && !addresses.some((a) => isInternalAddress(a.address))) return addresses[0]!.address;
    this.deny(host, port, method);
    return undefined;
  }

  /** A `CONNECT host:port` tunnel: allowed, resolved, then bytes both ways until either side closes or idles. */
  connect(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    socket.on('error', () => undefined);
    // A tunnel (or a CONNECT waiting for DNS) with no byte either way is closed; its upstream goes with it.
    socket.setTimeout(this.limits.tunnelIdleMs, () => socket.destroy());
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(req.url ?? '');
    if (!m) return void socket.end(rawAnswer(400, 'Bad Request'));
    const host = m[1]!;
    const port = Number(m[2]);
    if (!(port >= 1 && port <= 65535)) return void socket.end(rawAnswer(400, 'Bad Request'));
    if (!this.allowed(host, port, 'CONNECT'))
      return void socket.end(rawAnswer(403, 'Forbidden', `${shown(host)} is not in this sandbox's allowed hosts`));
    if (!this.active.take())
      return void socket.end(
        rawAnswer(503, 'Service Unavailable', `this sandbox already has ${this.active.max} connections through the proxy`),
      );
    const release = this.active.releaser();
    socket.on('close', release);
    this.resolve(host, port, 'CONNECT')
      .then((address) => {
        if (socket.destroyed) return;
        if (!address)
          return void socket.end(rawAnswer(403, 'Forbidden', `${shown(host)} does not lead to the internet`));
        const up = net.createConnection({ host: address, port });
        let connected = false;
        up.setTimeout(this.limits.connectMs, () => up.destroy(new Error('connect timeout')));
        up.on('connect', () => {
          connected = true;
          up.setTimeout(0); // from here the sandbox's side times the tunnel out
          socket.write(rawAnswer(200, 'Connection Established'));
          if (head.length) up.write(head);
          up.pipe(socket).pipe(up);
        });
        up.on('error', () => undefined);
        up.on('close', () => {
          if (connected) socket.destroy();
          else socket.end(rawAnswer(502, 'Bad Gateway', `${shown(host)} could not be reached`));
        });
        socket.on('close', () => up.destroy());
      })
      .catch(() => socket.destroy());
  }

  /** A plain-HTTP request with an absolute URI: allowed, resolved, then relayed both ways. */
  async request(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let target: URL;
    try {
      target = new URL(req.url ?? '');
      if (target.protocol !== 'http:') throw new Error('not http');
    } catch {
      return refuse(res, 400, 'this is a proxy: send absolute http:// URLs, or CONNECT for https');
    }
    const port = Number(target.port || 80);
    const method = req.method ?? 'GET';
    if (!this.allowed(target.hostname, port, method))
      return refuse(res, 403, `${shown(target.hostname)} is not in this sandbox's allowed hosts`);
    if (!this.active.take())
      return refuse(res, 503, `this sandbox already has ${this.active.max} requests through the proxy`, {
        connection: 'close',
      });
    res.on('close', this.active.releaser());
    const address = await this.resolve(target.hostname, port, method);
    if (!address) return refuse(res, 403, `${shown(target.hostname)} does not lead to the internet`);
    if (res.destroyed) return;
    const headers = { ...req.headers };
    for (const h of Object.keys(headers)) if (h.startsWith('proxy-')) delete headers[h];
    const up = http.request({ host: address, port, path: target.pathname + target.search, method, headers }, (upRes) => {
      if (!startAnswer(res, upRes.statusCode, upRes.headers)) return void upRes.destroy();
      upRes.on('close', () => {
        if (!upRes.complete) res.destroy(); // the host went away mid-answer: so does the sandbox's request
      });
      upRes.pipe(res);
    });
    up.setTimeout(this.limits.idleMs, () => up.destroy(new Error('no answer')));
    up.on('error', (err) => {
      req.unpipe(up);
      refuse(res, 502, `${shown(target.hostname)} could not be reached: ${err.message}`);
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy(); // the sandbox went away: so does the upstream request
    });
    req.pipe(up);
  }
}

/**
 * Creates the egress proxy server of a session (not yet listening), with its bounds: connections, requests and
 * tunnels at once, idle timeouts of connections and tunnels, header and request timeouts.
 */
export function createEgressProxy(
  session: EgressProxySession,
  hostMap: Record<string, string> | undefined,
  limits: GatewayLimits,
): http.Server {
  const proxy = new EgressProxy(session, hostMap, limits);
  const server = http.createServer((req, res) => {
    res.on('error', () => res.destroy());
    proxy.request(req, res).catch((err: unknown) => refuse(res, 400, (err as Error).message));
  });
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    try {
      proxy.connect(req, socket, head);
    } catch {
      socket.destroy();
    }
  });
  bound(server, limits, limits.egressConnections);
  return server;
}
