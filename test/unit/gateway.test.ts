import { describe, expect, it } from 'vitest';
import {
  BodyError,
  hostAllowed,
  pushAllowed,
  receivePackRefs,
  RefUpdateReader,
  rejectPush,
  remoteUrl,
} from '../../src/activities/sandbox/gateway.js';
import { parseAgentDefinition } from '../../src/config/agent.js';
import { repositoryPath, secretNames } from '../../src/shared/repositories.js';

function pkt(s: string): string {
  return (s.length + 4).toString(16).padStart(4, '0') + s;
}

describe('gateway', () => {
  it('matches allowed hosts by name, port and subdomain wildcard', () => {
    const allowed = ['api.example.com', '*.pypi.org', 'internal.test:8443'];
    expect(hostAllowed(allowed, 'api.example.com', 443)).toBe(true);
    expect(hostAllowed(allowed, 'API.Example.com.', 80)).toBe(true);
    expect(hostAllowed(allowed, 'example.com', 443)).toBe(false);
    expect(hostAllowed(allowed, 'evil-api.example.com', 443)).toBe(false);
    expect(hostAllowed(allowed, 'files.pypi.org', 443)).toBe(true);
    expect(hostAllowed(allowed, 'pypi.org', 443)).toBe(false);
    expect(hostAllowed(allowed, 'xpypi.org', 443)).toBe(false);
    expect(hostAllowed(allowed, 'internal.test', 8443)).toBe(true);
    expect(hostAllowed(allowed, 'internal.test', 443)).toBe(false);
    expect(hostAllowed([], 'api.example.com', 443)).toBe(false);
  });

  it('reads the ref updates of a receive-pack request and refuses other branches', () => {
    const z = '0'.repeat(40);
    const a = 'a'.repeat(40);
    const body = Buffer.from(
      pkt(`${z} ${a} refs/heads/main\0report-status side-band-64k agent=git/2.39\n`) +
        pkt(`${z} ${a} refs/tags/v1\n`) +
        '0000PACK...',
    );
    const { refs, capabilities } = receivePackRefs(body);
    expect(refs).toEqual(['refs/heads/main', 'refs/tags/v1']);
    expect(capabilities).toContain('side-band-64k');
    expect(pushAllowed(['main', 'feature/*'], 'refs/heads/main')).toBe(true);
    expect(pushAllowed(['main', 'feature/*'], 'refs/heads/feature/x')).toBe(true);
    expect(pushAllowed(['main', 'feature/*'], 'refs/heads/mainline')).toBe(false);
    expect(pushAllowed(['main'], 'refs/tags/v1')).toBe(false);
    expect(pushAllowed(undefined, 'refs/tags/v1')).toBe(true);
    expect(() => receivePackRefs(Buffer.from(pkt(`${z} ${a} refs/heads/main\n`)))).toThrow(/flush/);
    const answer = rejectPush(refs, ['report-status'], 'no').toString();
    expect(answer).toBe(`${pkt('unpack ok\n')}${pkt('ng refs/heads/main no\n')}${pkt('ng refs/tags/v1 no\n')}0000`);
    expect(rejectPush(refs, capabilities, 'no').subarray(4, 5)[0]).toBe(1); // side band 1 carries the report
  });

  it('reads the ref updates as the body comes, in any pieces, and stops at the flush packet', () => {
    const z = '0'.repeat(40);
    const a = 'a'.repeat(40);
    const body = Buffer.from(
      pkt(`${z} ${a} refs/heads/main\0report-status side-band-64k\n`) +
        pkt(`shallow ${a}\n`) +
        pkt(`${z} ${a} refs/heads/with space\n`) +
        '0000PACK' +
        'not a pkt-line at all',
    );
    const flush = body.indexOf('0000PACK');
    for (const size of [1, 3, 4, 5, 64, body.length]) {
      const reader = new RefUpdateReader(1024);
      let flushedAt = -1;
      for (let at = 0; at < body.length; at += size)
        if (reader.push(body.subarray(at, at + size)) && flushedAt < 0) flushedAt = at;
      expect(reader.refs, `pieces of ${size}`).toEqual(['refs/heads/main', 'refs/heads/with space']);
      expect(reader.capabilities).toEqual(['report-status', 'side-band-64k']);
      // True from the piece that holds the last byte of the flush packet on.
      expect(flushedAt, `pieces of ${size}`).toBe(Math.floor((flush + 3) / size) * size);
    }
  });

  it('refuses malformed and cut pkt-lines with 400 and ref updates past the cap with 413', () => {
    const error = (pieces: string[], max = 1024) => {
      const reader = new RefUpdateReader(max);
      try {
        for (const p of pieces) if (reader.push(Buffer.from(p))) return 'flushed';
        reader.end();
      } catch (err) {
        return err instanceof BodyError ? `${err.status} ${err.message}` : String(err);
      }
    };
    expect(error(['zzzz'])).toBe('400 malformed pkt-line');
    expect(error(['00zz'])).toBe('400 malformed pkt-line'); // parseInt would have read 0, a flush
    expect(error(['0003'])).toBe('400 malformed pkt-line');
    expect(error(['00', '0a', 'ab'])).toBe('400 truncated pkt-line');
    const z = '0'.repeat(40);
    const a = 'a'.repeat(40);
    expect(error([pkt(`${z} ${a} refs/heads/a\n`)])).toBe('400 no flush packet after the ref updates');
    expect(error([pkt(`${z} ${a} refs/heads/a\n`), '00', '00'])).toBe('flushed');
    const line = pkt(`${z} ${a} refs/heads/${'b'.repeat(100)}\n`);
    expect(error(Array(10).fill(line), 1000)).toBe('413 the ref updates of a push may take at most 1000 bytes');
    expect(error([line.slice(0, 50), line.slice(50), '0000'], 1000)).toBe('flushed');
    // Longer than git reads a pkt-line (65520 bytes): refused as soon as its header has come.
    expect(error(['fff1'], Infinity)).toBe('400 malformed pkt-line');
    // A pkt-line whose header promises more than the cap is refused before it has all come.
    expect(error(['fff0', 'x'.repeat(2000)], 1000)).toBe('413 the ref updates of a push may take at most 1000 bytes');
  });

  it('names repositories by URL and collects the secrets a session names', () => {
    const r = { type: 'github_repository' as const, url: 'https://github.com/acme/widgets.git', credential: 'gh' };
    expect(repositoryPath(r)).toBe('/workspace/widgets');
    expect(remoteUrl('tok', 2, r)).toBe('http://tandem:tok@127.0.0.1:47011/2/widgets.git');
    expect(secretNames({ agent: { resources: [r] }, resources: [{ ...r, credential: 'other' }, r] })).toEqual([
      'gh',
      'other',
    ]);
  });

  it('reads repository resources from an agent file and refuses a token in place of a secret name', () => {
    const agent = parseAgentDefinition(
      'name: a\nmodel: m\nresources:\n  - type: github_repository\n    url: https://github.com/acme/widgets\n' +
        '    checkout: {type: branch, name: dev}\n    credential: gh-token\n    push_branches: [dev]\n',
      'a.yaml',
    );
    expect(agent.resources).toEqual([
      { type: 'github_repository', url: 'https://github.com/acme/widgets', checkout: { type: 'branch', name: 'dev' }, credential: 'gh-token', push_branches: ['dev'] },
    ]);
    expect(() =>
      parseAgentDefinition('name: a\nmodel: m\nresources:\n  - type: git_repository\n    url: https://x.test/r.git\n    credential: "ghp_abc def"\n', 'a.yaml'),
    ).toThrow(/a.yaml:6:\d+: resources\[0\].credential: expected a vault secret name/);
    expect(() =>
      parseAgentDefinition('name: a\nmodel: m\nresources:\n  - type: git_repository\n    url: https://user:pw@x.test/r.git\n', 'a.yaml'),
    ).toThrow(/resources\[0\].url: expected an http\(s\) URL without credentials/);
  });
});
