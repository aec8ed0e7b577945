/**
 * A hostile push from inside a real sandbox: the agent's shell crafts, byte by byte, a receive-pack request whose
 * ref updates hide in a push certificate and are split over pkt-lines (each line alone names no ref, git joins them
 * into commands), with a real pack, and sends it with raw HTTP to the forwarded git proxy port. The proxy refuses
 * it, so the branch `push_branches` does not allow stays where it was; a plain push to an allowed branch still lands.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { RepositoryResource } from '../../src/shared/types.js';
import { GIT_ENV } from '../fakes/git-server.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { startSession, testAgent, toolResults, useHarness, waitIdle } from '../helpers/env.js';

const h = useHarness('hostilepush', {
  assertDone: true,
  worker: () => ({ env: { TANDEM_HANDS_DIR: mkdtempSync(join(tmpdir(), 'tandem-gw-')) } }),
});

const git = (dir: string, ...args: string[]) => execFileSync('git', ['-C', dir, ...args], { env: GIT_ENV }).toString().trim();

/**
 * Python run in the sandbox: reads the origin URL (with the phantom token) and two commits, and sends a push of
 * `refs/heads/main` from the first to the second inside a push certificate, each command split in two pkt-lines,
 * followed by the pack in /tmp/pack. Prints the proxy's answer.
 */
const CRAFT = String.raw`
import base64, socket, sys, urllib.parse
url, base, new = sys.argv[1:4]
u = urllib.parse.urlsplit(url)
def pkt(s):
    b = s.encode()
    return b'%04x' % (len(b) + 4) + b
lines = ['push-cert\0report-status\n', 'nonce 1700000000-0\n', '\n', base + ' ' + new, ' refs/heads/main\n', 'push-cert-end\n']
body = b''.join(pkt(l) for l in lines) + b'0000' + open('/tmp/pack', 'rb').read()
auth = base64.b64encode((u.username + ':' + u.password).encode()).decode()
head = ('POST ' + u.path + '/git-receive-pack HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ' + auth +
        '\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: ' + str(len(body)) +
        '\r\nConnection: close\r\n\r\n')
s = socket.create_connection((u.hostname, u.port))
s.sendall(head.encode() + body)
out = b''
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
print(out.decode('latin1'))
`;

describe('a hostile push from inside the sandbox', () => {
  it('is refused at the git proxy, and the branch it aimed at stays where it was', async () => {
    // A bare repository: git's own rule against pushing to a checked-out branch would hide the proxy's part.
    const host = mkdtempSync(join(tmpdir(), 'tandem-hostile-'));
    const repo = join(host, 'app');
    mkdirSync(repo);
    git(repo, 'init', '--quiet', '--bare', '--initial-branch=main');
    const seed = join(host, 'seed');
    git(host, 'init', '--quiet', '--initial-branch=main', seed);
    git(seed, 'commit', '--quiet', '--allow-empty', '-m', 'first commit');
    git(seed, 'push', '--quiet', repo, 'main');
    const before = git(repo, 'rev-parse', 'main');
    const resource: RepositoryResource = { type: 'git_repository', url: pathToFileURL(repo).href, push_branches: ['agent/*'] };
    const commit = `git -c user.name=agent -c user.email=agent@example.com commit -q --allow-empty -m 'from the sandbox'`;
    h.model.push(
      reply(
        toolUse(
          'bash',
          {
            command:
              `cd /workspace/app && ${commit} && base=$(git rev-parse HEAD~1) && new=$(git rev-parse HEAD) && ` +
              `printf '%s\\n^%s\\n' "$new" "$base" | git pack-objects -q --stdout --revs > /tmp/pack && ` +
              `python3 - "$(git remote get-url origin)" "$base" "$new" <<'PY'\n${CRAFT}\nPY\n` +
              'git push origin HEAD:agent/fine 2>&1; echo pushed',
          },
          'tu_hostile',
        ),
      ),
      reply('Done.'),
    );
    const handle = await startSession(
      h.client,
      h.queue,
      { agent: testAgent({ sandbox: { memory_mb: 256 } }), resources: [resource] },
      'push',
    );
    await waitIdle(handle, 'end_turn', 2, 120_000);
    const out = toolResults(h.model.requests.at(-1)!).get('tu_hostile')?.content ?? '';
    expect(out).toContain(
      'unpack tandem: signed pushes (git push --signed) are not supported through the tandem proxy; push without --signed',
    );
    expect(out).not.toContain('ok refs/heads/main');
    expect(out).toContain('* [new branch]      HEAD -> agent/fine');
    expect(git(repo, 'rev-parse', 'main')).toBe(before);
    expect(git(repo, 'log', '--format=%s', 'agent/fine')).toBe('from the sandbox\nfirst commit');
    await handle.cancel();
  });
});
