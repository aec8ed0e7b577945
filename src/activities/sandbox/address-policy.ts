/**
 * The gateway's one address policy: which addresses a sandbox may be led to through the egress proxy, which hosts
 * the credential proxy may send a token to over plain http, and which host names an allow-list entry matches.
 *
 * An allowed name is looked up on the worker host; when its answer is an address of the worker host itself, a
 * private or special-purpose network, or a translation prefix (NAT64, 6to4, Teredo, IPv4-compatible) that leads
 * to one, the request is refused: a name under someone else's control must not lead the sandbox to the worker's own
 * services (the Temporal frontend, the codec server, a cloud metadata endpoint). Addresses are parsed into bytes
 * (IPv6 with `::` expanded and a dotted IPv4 tail), so no spelling of an address escapes its range.
 */
import * as net from 'node:net';
import { networkInterfaces } from 'node:os';

/** An IPv4 range: first address and prefix length. */
type Range4 = readonly [string, number];

/**
 * IPv4 ranges that are not the internet (IANA's special-purpose registry). The documentation ranges 192.0.2.0/24,
 * 198.51.100.0/24 and 203.0.113.0/24 are left out on purpose: they lead nowhere on the internet, and tests use them
 * as stand-ins for public hosts inside network namespaces.
 */
const INTERNAL_V4: readonly Range4[] = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local: cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments (DS-Lite, NAT64 discovery)
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking: used for internal test networks
  ['224.0.0.0', 3], // multicast, reserved, broadcast
];

/** Parses an IPv4 address in dotted-quad form into its 4 bytes; undefined when it is not one. */
function parse4(text: string): Uint8Array | undefined {
  if (!net.isIPv4(text)) return undefined;
  return Uint8Array.from(text.split('.').map(Number));
}

/**
 * Parses an IPv6 address into its 16 bytes: `::` expanded, a dotted IPv4 tail (`::ffff:10.0.0.1`) read, a zone
 * (`%eth0`) dropped. Undefined when it is not one.
 */
function parse6(text: string): Uint8Array | undefined {
  const address = text.replace(/%.*$/, '');
  if (!net.isIPv6(address)) return undefined;
  let head = address;
  const tail: number[] = [];
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (dotted) {
    const v4 = parse4(dotted[2]!);
    if (!v4) return undefined;
    head = dotted[1]!.endsWith('::') ? dotted[1]! : dotted[1]!.slice(0, -1);
    tail.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
  }
  const groups = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const gap = head.indexOf('::');
  let words: number[];
  if (gap < 0) words = [...groups(head), ...tail];
  else {
    const before = groups(head.slice(0, gap));
    const after = [...groups(head.slice(gap + 2)), ...tail];
    words = [...before, ...Array<number>(8 - before.length - after.length).fill(0), ...after];
  }
  if (words.length !== 8 || words.some((w) => !(w >= 0 && w <= 0xffff))) return undefined;
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

/** Parses an IPv4 or IPv6 address (brackets allowed) into 4 or 16 bytes; undefined when it is neither. */
export function parseAddress(text: string): Uint8Array | undefined {
  const t = text.replace(/^\[(.*)\]$/, '$1');
  return parse4(t) ?? parse6(t);
}

function inRange4(bytes: Uint8Array, [first, prefix]: Range4): boolean {
  const start = parse4(first)!;
  for (let bit = 0; bit < prefix; bit++) {
    const mask = 0x80 >> bit % 8;
    if ((bytes[bit >> 3]! & mask) !== (start[bit >> 3]! & mask)) return false;
  }
  return true;
}

/** Whether `bytes` begins with the bytes of `prefix`. */
function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return prefix.every((b, i) => bytes[i] === b);
}

/** Whether bytes `from` to `to` (exclusive) are all 0. */
function zero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The worker host's own addresses, from its network interfaces (loopback included): a public address of the
 * worker itself is no more the internet than 127.0.0.1 is. Read on each check, so a changed address counts at once.
 */
export function ownAddresses(): Uint8Array[] {
  const own: Uint8Array[] = [];
  for (const list of Object.values(networkInterfaces()))
    for (const i of list ?? []) {
      const bytes = parseAddress(i.address);
      if (bytes) own.push(bytes);
    }
  return own;
}

/** Where an address is: `internal` (this host, a private or special-purpose network) or `public` (the internet). */
export type AddressClass = 'internal' | 'public';

function classify4(bytes: Uint8Array, own: readonly Uint8Array[]): AddressClass {
  if (INTERNAL_V4.some((r) => inRange4(bytes, r))) return 'internal';
  return own.some((o) => sameBytes(o, bytes)) ? 'internal' : 'public';
}

function classify6(b: Uint8Array, own: readonly Uint8Array[]): AddressClass {
  const v4 = (at: number) => classify4(b.subarray(at, at + 4), own);
  // ::/96: unspecified, loopback, and the deprecated IPv4-compatible ::a.b.c.d (no public host has one).
  if (zero(b, 0, 12)) return 'internal';
  // ::ffff:a.b.c.d (IPv4-mapped) and ::ffff:0:a.b.c.d (IPv4-translated): the IPv4 address is where it leads.
  if (zero(b, 0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12);
  if (zero(b, 0, 8) && b[8] === 0xff && b[9] === 0xff && b[10] === 0 && b[11] === 0) return v4(12);
  // NAT64, well-known prefix 64:ff9b::/96: the embedded IPv4 address is where it leads.
  if (startsWith(b, [0, 0x64, 0xff, 0x9b]) && zero(b, 4, 12)) return v4(12);
  // NAT64, local-use prefix 64:ff9b:1::/48 (RFC 8215): as the well-known one when used as a /96; any other
  // layout within it puts the IPv4 address where it cannot be read without the operator's prefix length.
  if (startsWith(b, [0, 0x64, 0xff, 0x9b, 0, 1])) return zero(b, 6, 12) ? v4(12) : 'internal';
  // 6to4, 2002::/16: the IPv4 address of the 6to4 site follows the prefix.
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2);
  // Teredo, 2001::/32: a tunnel through an IPv4 NAT to an address the proxy cannot check; benchmarking 2001:2::/48.
  if (startsWith(b, [0x20, 0x01, 0, 0]) || startsWith(b, [0x20, 0x01, 0, 2, 0, 0])) return 'internal';
  // 100::/64 discard-only.
  if (startsWith(b, [1, 0]) && zero(b, 2, 8)) return 'internal';
  // fc00::/7 unique local, fe80::/10 link-local, fec0::/10 site-local (deprecated), ff00::/8 multicast.
  if ((b[0]! & 0xfe) === 0xfc || (b[0] === 0xfe && (b[1]! & 0x80) === 0x80) || b[0] === 0xff) return 'internal';
  return own.some((o) => sameBytes(o, b)) ? 'internal' : 'public';
}

/**
 * Classifies an address: `internal` for the worker host's own addresses and every special-purpose range (loopback,
 * private, link-local, carrier-grade NAT, benchmarking, multicast, unique-local IPv6, ...), the translation
 * prefixes by the IPv4 address they embed (IPv4-mapped, NAT64, 6to4) or as a whole where it cannot be checked
 * (Teredo, IPv4-compatible); `public` otherwise. A string that is no address at all is `internal` (fail closed).
 */
export function classifyAddress(address: string, own: readonly Uint8Array[] = ownAddresses()): AddressClass {
  const bytes = parseAddress(address);
  if (!bytes) return 'internal';
  return bytes.length === 4 ? classify4(bytes, own) : classify6(bytes, own);
}

/**
 * Whether an address is this host, a private network, link-local (cloud metadata) or otherwise not the internet:
 * an allowed name that resolves there would lead the sandbox to the worker's own services.
 */
export function isInternalAddress(address: string, own?: readonly Uint8Array[]): boolean {
  return classifyAddress(address, own) === 'internal';
}

/**
 * Whether a URL's host is this machine's loopback (`localhost`, 127.0.0.0/8, `::1`, or an IPv4-mapped loopback):
 * the only place plain http may carry a credential.
 */
export function isLoopback(hostname: string): boolean {
  if (hostname.toLowerCase() === 'localhost') return true;
  const bytes = parseAddress(hostname);
  if (!bytes) return false;
  if (bytes.length === 4) return bytes[0] === 127;
  if (zero(bytes, 0, 15) && bytes[15] === 1) return true;
  return zero(bytes, 0, 10) && bytes[10] === 0xff && bytes[11] === 0xff && bytes[12] === 127;
}

/** Whether `host:port` matches an allow-list entry: `host`, `host:port`, or `*.domain` (subdomains only). */
export function hostAllowed(allowed: string[], host: string, port: number): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  return allowed.some((entry) => {
    const e = entry.toLowerCase().trim();
    const m = /^(.*?)(?::(\d+))?$/.exec(e);
    const pattern = m?.[1] ?? e;
    if (m?.[2] && Number(m[2]) !== port) return false;
    if (pattern.startsWith('*.')) return h.endsWith(pattern.slice(1)) && h.length > pattern.length - 1;
    return h === pattern;
  });
}
