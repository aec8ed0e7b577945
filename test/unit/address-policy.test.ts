/**
 * The gateway's address policy: every spelling of an address is parsed to its bytes, and an address is internal
 * when it is the worker host's own, in a special-purpose range, or a translation prefix leading to either.
 */
import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  classifyAddress,
  isInternalAddress,
  isLoopback,
  ownAddresses,
  parseAddress,
} from '../../src/activities/sandbox/address-policy.js';

/** No own addresses: the ranges alone decide. */
const NONE: Uint8Array[] = [];

describe('the address policy', () => {
  it('parses IPv4 and every IPv6 spelling to the same bytes', () => {
    const hex = (a: string) => Buffer.from(parseAddress(a) ?? []).toString('hex');
    const cases: Array<[string, string]> = [
      ['10.0.0.1', '0a000001'],
      ['::', '0'.repeat(32)],
      ['::1', `${'0'.repeat(30)}01`],
      ['0:0:0:0:0:0:0:1', `${'0'.repeat(30)}01`],
      ['0000:0000:0000:0000:0000:0000:0000:0001', `${'0'.repeat(30)}01`],
      ['[::1]', `${'0'.repeat(30)}01`],
      ['1::', `0001${'0'.repeat(28)}`],
      ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
      ['1:2:3:4:5:6:1.2.3.4', '00010002000300040005000601020304'],
      ['::ffff:1.2.3.4', '00000000000000000000ffff01020304'],
      ['::FFFF:102:304', '00000000000000000000ffff01020304'],
      ['64:ff9b::8.8.8.8', '0064ff9b000000000000000008080808'],
      ['fe80::1%eth0', `fe80${'0'.repeat(26)}01`],
      ['2001:db8:0:0:1::1', '20010db8000000000001000000000001'],
    ];
    for (const [text, bytes] of cases) expect(hex(text), text).toBe(bytes);
    for (const bad of ['', 'localhost', '1.2.3', '256.1.1.1', '1:2:3:4:5:6:7:8:9', '1::2::3', '::1.2.3.256', ':::', '12345::'])
      expect(parseAddress(bad), bad).toBeUndefined();
  });

  it('classifies IPv4 addresses: special-purpose ranges are internal, documentation ranges and the internet are not', () => {
    const internal = [
      '0.0.0.0', '0.1.2.3', // this network
      '10.0.0.1', '10.255.255.255',
      '100.64.0.1', '100.127.255.255', // carrier-grade NAT
      '127.0.0.1', '127.255.255.254',
      '169.254.169.254', // cloud metadata
      '172.16.0.1', '172.31.255.255',
      '192.0.0.1', '192.0.0.170', // IETF protocol assignments, NAT64 discovery
      '192.88.99.1', // 6to4 relay anycast
      '192.168.1.1',
      '198.18.0.1', '198.19.255.255', // benchmarking
      '224.0.0.1', '239.255.255.255', '240.0.0.1', '255.255.255.255',
    ];
    const external = [
      '8.8.8.8', '1.1.1.1', '93.184.216.34', '9.255.255.255', '11.0.0.0',
      '100.63.255.255', '100.128.0.0', '126.255.255.255', '128.0.0.0', '169.253.255.255', '169.255.0.0',
      '172.15.255.255', '172.32.0.0', '192.0.1.0', '192.88.98.255', '192.167.255.255', '192.169.0.0',
      '198.17.255.255', '198.20.0.0', '223.255.255.255',
      '192.0.2.1', '198.51.100.7', '203.0.113.9', // documentation: stand-ins for public hosts in tests
    ];
    for (const a of internal) expect(classifyAddress(a, NONE), a).toBe('internal');
    for (const a of external) expect(classifyAddress(a, NONE), a).toBe('public');
  });

  it('classifies IPv6 addresses, and translation prefixes by the IPv4 address they lead to', () => {
    const internal = [
      '::', '::1', '0:0:0:0:0:0:0:1', '[::1]',
      '::127.0.0.1', '::8.8.8.8', '::808:808', // IPv4-compatible (deprecated): no public host has one
      '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:169.254.169.254', // IPv4-mapped
      '::ffff:0:10.0.0.1', // IPv4-translated
      '64:ff9b::127.0.0.1', '64:ff9b::a9fe:a9fe', '64:ff9b::10.0.0.1', '64:ff9b::198.18.0.1', // NAT64
      '64:ff9b:1::10.0.0.1', '64:ff9b:1:abcd::1', '64:ff9b:1:0:0:1::808:808', // local-use NAT64
      '2002:7f00:1::1', '2002:a00:1::', '2002:c0a8:101::1', '2002:a9fe:a9fe::', // 6to4
      '2001::1', '2001:0:4136:e378:8000:63bf:3fff:fdd2', // Teredo
      '2001:2::1', // benchmarking
      '100::1', // discard-only
      'fc00::1', 'fd12:3456::1', 'FD00::1', // unique local
      'fe80::1', 'fe80::1%eth0', 'febf:ffff::1', 'fec0::1', // link-local, site-local
      'ff02::1', 'ff05::1:3', // multicast
    ];
    const external = [
      '2606:4700:4700::1111', '2001:4860:4860::8888', '2a00:1450:4001:800::200e',
      '::ffff:8.8.8.8', '::ffff:0:8.8.8.8', '64:ff9b::8.8.8.8', '64:ff9b::808:808', '64:ff9b:1::8.8.8.8',
      '2002:808:808::1', '2001:db8::1', 'fbff::1', '2001:1::1',
      '::ffff:203.0.113.9', '64:ff9b::198.51.100.7', // documentation ranges, through a translation prefix
    ];
    for (const a of internal) expect(classifyAddress(a, NONE), a).toBe('internal');
    for (const a of external) expect(classifyAddress(a, NONE), a).toBe('public');
  });

  it('counts the worker host own addresses as internal, in every spelling', () => {
    const own = [parseAddress('203.0.113.7')!, parseAddress('2a01:4f8:c0c:1234::5')!];
    const internal = [
      '203.0.113.7', '::ffff:203.0.113.7', '64:ff9b::cb00:7107', '64:ff9b::203.0.113.7', '2002:cb00:7107::1',
      '2a01:4f8:c0c:1234::5', '2a01:4f8:c0c:1234:0:0:0:5', '2A01:04F8:0C0C:1234::0005',
    ];
    for (const a of internal) expect(classifyAddress(a, own), a).toBe('internal');
    for (const a of ['203.0.113.8', '2a01:4f8:c0c:1234::6']) expect(classifyAddress(a, own), a).toBe('public');
    // By default, the addresses of this host's own interfaces.
    const mine = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address));
    expect(mine.length).toBeGreaterThan(0);
    expect(ownAddresses().length).toBe(mine.length);
    for (const a of mine) expect(isInternalAddress(a), a).toBe(true);
  });

  it('refuses what is no address at all', () => {
    for (const a of ['', 'localhost', 'example.com', '1.2.3', '::g', '999.1.1.1'])
      expect(classifyAddress(a, NONE), a).toBe('internal');
  });

  it('sends a credential over plain http to loopback only', () => {
    for (const h of ['localhost', 'LOCALHOST', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '[::ffff:127.0.0.1]', '[0:0:0:0:0:0:0:1]'])
      expect(isLoopback(h), h).toBe(true);
    for (const h of ['10.0.0.1', '128.0.0.1', 'example.com', '[::2]', '[::]', '0.0.0.0', 'localhost.example.com'])
      expect(isLoopback(h), h).toBe(false);
  });
});
