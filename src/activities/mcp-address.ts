/**
 * Where an MCP server named by an API client may be. The worker calls MCP servers from its own host, so a URL an API
 * client chooses would otherwise lead the worker to a cloud metadata endpoint (169.254.169.254), to its own loopback
 * services (the Temporal frontend, the codec server) or into the private network. Such URLs are refused twice: by
 * the API when the agent or session is created ({@link mcpUrlRefusal}), and by the worker on every connection it
 * opens for such a server ({@link publicOnlyFetch}), since a name may resolve elsewhere by then. Agent files and the
 * client library are the operator's and are not restricted.
 */
import { lookup, type LookupAddress, type LookupOptions } from 'node:dns';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { Readable } from 'node:stream';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { isInternalAddress } from './sandbox/address-policy.js';
import { TandemError } from '../shared/errors.js';

/** The host of a URL as compared and looked up: lower case, without IPv6 brackets or a trailing dot. */
export function urlHost(url: string | URL): string {
  return new URL(url).hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
}

/** Why a host name leads into this machine or a private network whatever DNS answers; undefined otherwise. */
function privateName(host: string): string | undefined {
  if (host === 'localhost' || host.endsWith('.localhost')) return 'names this machine';
  if (!host.includes('.')) return "is a single-label name, which the worker resolves through its own network's search domains";
  if (/\.(local|internal|intranet|lan|home\.arpa)$/.test(host)) return 'is a private-network name';
  return undefined;
}

const INTERNAL = 'a loopback, private, link-local or otherwise internal address';

/** Whether the operator allows API clients to name this URL's host (`TANDEM_MCP_PRIVATE_HOSTS`). */
export function privateHostAllowed(url: string, allowed: readonly string[]): boolean {
  const host = urlHost(url);
  return allowed.some((a) => a.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '') === host);
}

/** Every address a name resolves to. */
function lookupAll(host: string): Promise<string[]> {
  return new Promise((resolve, reject) =>
    lookup(host, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses.map((a) => a.address)))),
  );
}

/** Options of {@link mcpUrlRefusal}. */
export interface McpUrlPolicy {
  /** Hosts the operator allows although they are internal (`TANDEM_MCP_PRIVATE_HOSTS`). */
  allowed?: readonly string[];
  /** Resolves a name to its addresses (default: the system resolver). */
  resolve?: (host: string) => Promise<string[]>;
  /** How long the lookup may take before the URL is left to the worker's check. Default 3 s. */
  resolveTimeoutMs?: number;
}

/**
 * Why an API client may not name `url` as an MCP server; undefined when it may. Refused: an internal address written
 * in the URL, a name that means this machine or a private network, and a name that resolves (here, now) to an
 * internal address. A name that does not resolve here is left to the worker, which checks every connection.
 */
export async function mcpUrlRefusal(url: string, policy: McpUrlPolicy = {}): Promise<string | undefined> {
  if (privateHostAllowed(url, policy.allowed ?? [])) return undefined;
  const host = urlHost(url);
  const allow = 'the operator can allow a host with TANDEM_MCP_PRIVATE_HOSTS';
  if (net.isIP(host)) {
    return isInternalAddress(host)
      ? `${host} is ${INTERNAL}: the worker would request it from its own network (${allow})`
      : undefined;
  }
  const named = privateName(host);
  if (named) return `${host} ${named}: the worker would request it from its own network (${allow})`;
  let timer: NodeJS.Timeout | undefined;
  const addresses = await Promise.race([
    (policy.resolve ?? lookupAll)(host).catch(() => [] as string[]),
    new Promise<string[]>((resolve) => {
      timer = setTimeout(() => resolve([]), policy.resolveTimeoutMs ?? 3000);
    }),
  ]).finally(() => clearTimeout(timer));
  const internal = addresses.find((a) => isInternalAddress(a));
  return internal ? `${host} resolves to ${internal}, ${INTERNAL}: the worker would request it from its own network (${allow})` : undefined;
}

/** A connection the worker refused to open: the server's host is, or resolves to, an internal address. */
export class InternalAddressError extends TandemError {
  constructor(
    readonly host: string,
    readonly address: string,
  ) {
    super(
      host === address
        ? `${host} is ${INTERNAL}, and this server was named through the API`
        : `${host} resolves to ${address}, ${INTERNAL}, and this server was named through the API`,
    );
  }
}

/** Whether `err` or one of its causes is an {@link InternalAddressError}. */
export function internalAddressError(err: unknown): InternalAddressError | undefined {
  for (let e = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++)
    if (e instanceof InternalAddressError) return e;
  return undefined;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** Statuses whose response has no body. */
const NO_BODY = new Set([101, 204, 205, 304]);

/**
 * A `dns.lookup` for sockets that refuses a name with any internal address among its answers (an
 * {@link InternalAddressError}): what connects to a host an API client named goes only to public addresses, checked
 * on the connection's own lookup.
 */
export function publicOnlyLookup(isInternal: (address: string) => boolean = isInternalAddress) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const internal = addresses.find((a) => isInternal(a.address));
      if (internal) return callback(new InternalAddressError(hostname, internal.address) as NodeJS.ErrnoException, []);
      if (addresses.length === 0) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), []);
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

/**
 * A `fetch` for the MCP client of a server an API client named: each connection it opens goes only to a public
 * address, checked on the addresses the socket connects to (the name is looked up for that connection and refused
 * when any answer is internal), so a DNS answer that changed since the API's check does not get through. Redirects
 * are not followed here (the MCP client decides, and its next request comes through here again). `isInternal` is
 * the address policy (tests pass their own).
 */
export function createPublicOnlyFetch(isInternal: (address: string) => boolean = isInternalAddress): FetchLike {
  const publicLookup = publicOnlyLookup(isInternal);
  // Agents of its own, so a pooled connection is always one this check let through.
  const agents = {
    'http:': new http.Agent({ keepAlive: true, lookup: publicLookup } as http.AgentOptions),
    'https:': new https.Agent({ keepAlive: true, lookup: publicLookup } as https.AgentOptions),
  };
  return async (input, init = {}) => {
    const url = new URL(input);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`unsupported URL scheme ${url.protocol}`);
    const host = urlHost(url);
    if (net.isIP(host) && isInternal(host)) throw new InternalAddressError(host, host); // sockets skip the lookup
    const headers = new Headers(init.headers);
    const body = init.body;
    if (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array))
      throw new TypeError('this fetch sends string or byte bodies only');
    const method = (init.method ?? 'GET').toUpperCase();
    return new Promise<Response>((resolve, reject) => {
      const request = (url.protocol === 'https:' ? https : http).request(
        url,
        {
          method,
          headers: Object.fromEntries(headers),
          agent: agents[url.protocol as 'http:' | 'https:'],
          lookup: publicLookup as unknown as typeof lookup,
          ...(init.signal ? { signal: init.signal } : {}),
        },
        (res) => {
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 599) {
            res.destroy();
            return reject(new TypeError(`unexpected HTTP status ${status}`));
          }
          const out = new Headers();
          for (const [k, v] of Object.entries(res.headers)) for (const value of [v ?? []].flat()) out.append(k, value);
          const bodyless = NO_BODY.has(status) || method === 'HEAD';
          if (bodyless) res.resume();
          const stream = bodyless ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
          resolve(new Response(stream, { status, statusText: res.statusMessage ?? '', headers: out }));
        },
      );
      request.on('error', reject);
      request.end(body ?? undefined);
    });
  };
}

/** {@link createPublicOnlyFetch} with the gateway's address policy. */
export const publicOnlyFetch: FetchLike = createPublicOnlyFetch();
