/**
 * A test host on the internet, as far as Tandem can tell: an HTTP server in a network namespace of its own, reached
 * over a veth pair with addresses from the documentation range 203.0.113.0/24 (which no real host has, and which
 * the egress proxy treats as public). Traffic to it never leaves this machine.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestHost {
  /** The server's address in its namespace (`203.0.113.x`). */
  address: string;
  /** The address of this machine's end of the veth pair: one of the worker host's own addresses. */
  hostSide: string;
  port: number;
  close(): Promise<void>;
}

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Starts a test host whose server answers `hello from test host <Host header> <path>`. */
export async function startTestHost(port = 8080): Promise<TestHost> {
  const id = randomBytes(3).toString('hex');
  const ns = `tnd-${id}`;
  const [outside, inside] = [`tv${id}h`, `tv${id}n`];
  const block = 4 * (1 + (parseInt(id, 16) % 60)); // a /30 of its own: tests can run side by side
  const hostSide = `203.0.113.${block + 1}`;
  const address = `203.0.113.${block + 2}`;
  let server: ChildProcess | undefined;
  const close = async () => {
    server?.kill('SIGKILL');
    await run('ip', ['netns', 'del', ns]).catch(() => undefined); // the veth pair goes with it
    await run('ip', ['link', 'del', outside]).catch(() => undefined);
  };
  try {
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside]);
    await run('ip', ['link', 'set', inside, 'netns', ns]);
    await run('ip', ['addr', 'add', `${hostSide}/30`, 'dev', outside]);
    await run('ip', ['link', 'set', outside, 'up']);
    await run('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', `${address}/30`, 'dev', inside]);
    await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', inside, 'up']);
    await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    const script =
      "require('http').createServer((q, r) => r.end('hello from test host ' + q.headers.host + ' ' + q.url + '\\n'))" +
      `.listen(${port}, '${address}')`;
    server = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: 'ignore' });
    // Up when it answers from here, over the veth pair.
    for (let i = 0; ; i++) {
      const answered = await get(`http://${address}:${port}/ready`).then(
        (body) => body.startsWith('hello from test host'),
        () => false,
      );
      if (answered) break;
      if (i >= 100 || server.exitCode !== null) throw new Error(`the test host ${address} did not come up`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { address, hostSide, port, close };
  } catch (err) {
    await close();
    throw err;
  }
}
