/**
 * Egress: a sandbox has no network unless its agent asks for `network: {policy: limited, allowed_hosts}` or
 * `{policy: unrestricted}`; then its only way out is the worker's egress proxy, which lets allowed hosts (every
 * public host, when unrestricted) through (CONNECT and plain HTTP) and records every refusal as a
 * `sandbox.egress_denied` event. The public host is a test host in a network namespace (test/helpers/netns.ts).
 */
import { mkdtempSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { reply, toolUse } from '../fakes/messages-server.js';
import { startTestHost } from '../helpers/netns.js';
import { sessionEvents, startSession, testAgent, toolResults, useHarness, waitIdle, sandboxName } from '../helpers/env.js';

const docker = new Docker();
const h = useHarness('egress', {
  assertDone: true,
  record: 'egress',
  worker: () => ({
    env: {
      TANDEM_HANDS_DIR: mkdtempSync(join(tmpdir(), 'tandem-gw-')),
      TANDEM_EGRESS_HOST_MAP: 'allowed.test=127.0.0.1,denied.test=127.0.0.1',
    },
  }),
});

let server: http.Server;
let port = 0;
let hostIp = '';

beforeAll(async () => {
  // Listens on every address, so a sandbox could reach it over any network path it had.
  server = http.createServer((req, res) => res.end(`hello from ${req.headers.host} ${req.url}\n`));
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  port = (server.address() as AddressInfo).port;
  const bridge = await docker.getNetwork('bridge').inspect();
  hostIp = bridge.IPAM?.Config?.[0]?.Gateway ?? '172.17.0.1';
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
});

describe('egress', () => {
  it('lets allowed hosts through the proxy, refuses the rest and records each refusal', async () => {
    h.model.push(
      reply(toolUse('bash', { command: `curl -sS -m 10 http://allowed.test:${port}/plain` }, 'tu_allowed')),
      reply(toolUse('bash', { command: `curl -sS -m 10 --proxytunnel http://allowed.test:${port}/tunnel` }, 'tu_tunnel')),
      reply(toolUse('bash', { command: `curl -sS -m 10 http://denied.test:${port}/; echo "exit $?"` }, 'tu_denied')),
      reply(toolUse('bash', { command: `curl -sS -m 10 --proxytunnel http://denied.test:${port}/; echo "exit $?"` }, 'tu_denied_tunnel')),
      reply(toolUse('bash', { command: `curl -sS -m 5 --noproxy '*' http://${hostIp}:${port}/; echo "exit $?"` }, 'tu_direct')),
      reply('Done.'),
    );
    const agent = testAgent({
      sandbox: { memory_mb: 256, network: { policy: 'limited', allowed_hosts: ['allowed.test'] } },
    });
    const handle = await startSession(h.client, h.queue, { agent }, 'reach out');
    await waitIdle(handle, 'end_turn', 6);
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_allowed')?.content).toBe(`hello from allowed.test:${port} /plain`);
    expect(results.get('tu_tunnel')?.content).toBe(`hello from allowed.test:${port} /tunnel`);
    expect(results.get('tu_denied')?.content).toContain("tandem: denied.test is not in this sandbox's allowed hosts");
    expect(results.get('tu_denied_tunnel')?.content).toMatch(/CONNECT.*403|403.*CONNECT|Received HTTP code 403/);
    // No network path other than the proxy: the host's own address is unreachable from the sandbox.
    expect(results.get('tu_direct')?.content).toMatch(/exit [1-9]/);
    expect(results.get('tu_direct')?.content).not.toContain('hello from');

    const denials = (await sessionEvents(h.client, handle)).filter((e) => e.type === 'sandbox.egress_denied');
    expect(denials.map((d) => [d.host, d.port, d.method, d.tool_use_id])).toEqual([
      ['denied.test', port, 'GET', 'tu_denied'],
      ['denied.test', port, 'CONNECT', 'tu_denied_tunnel'],
    ]);
    const info = await docker.getContainer(sandboxName(handle.workflowId)).inspect();
    expect(info.HostConfig.NetworkMode).toBe('none');
    expect(info.Config.Env).toContain('TANDEM_SHELL_ENV_HTTPS_PROXY=http://127.0.0.1:47012');
    await handle.cancel();
  });

  it('refuses an allowed name that leads to the worker host, and survives a CONNECT to a port that cannot exist', async () => {
    h.model.push(
      // `localhost` is allowed but not in the host map: its address is the worker's own host.
      reply(toolUse('bash', { command: `curl -sS -m 10 --noproxy '' -x http://127.0.0.1:47012 http://localhost:${port}/; echo "exit $?"` }, 'tu_local')),
      reply(
        toolUse(
          'bash',
          {
            command:
              `python3 -c "import socket; s = socket.create_connection(('127.0.0.1', 47012)); ` +
              `s.sendall(b'CONNECT allowed.test:99999 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'); print(s.recv(200).decode())"`,
          },
          'tu_port',
        ),
      ),
      reply(toolUse('bash', { command: `curl -sS -m 10 http://allowed.test:${port}/after` }, 'tu_after')),
      reply('Done.'),
    );
    const agent = testAgent({
      sandbox: { memory_mb: 256, network: { policy: 'limited', allowed_hosts: ['allowed.test', 'localhost'] } },
    });
    const handle = await startSession(h.client, h.queue, { agent }, 'reach the host');
    await waitIdle(handle, 'end_turn', 4);
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_local')?.content).toContain('tandem: localhost does not lead to the internet');
    expect(results.get('tu_local')?.content).not.toContain('hello from');
    expect(results.get('tu_port')?.content).toContain('HTTP/1.1 400 Bad Request');
    // The proxy, and the worker it runs in, are still there.
    expect(results.get('tu_after')?.content).toBe(`hello from allowed.test:${port} /after`);
    const denials = (await sessionEvents(h.client, handle)).filter((e) => e.type === 'sandbox.egress_denied');
    expect(denials.map((d) => [d.host, d.tool_use_id])).toEqual([['localhost', 'tu_local']]);
    await handle.cancel();
  });

  it('unrestricted: a public host is reached through the proxy; the worker host, loopback, metadata and private networks are refused and recorded', async () => {
    const host = await startTestHost();
    try {
      const temporalPort = Number(inject('temporalAddress').split(':').at(-1));
      const curl = (url: string, id: string, extra = '') => reply(toolUse('bash', { command: `curl -sS -m 10 ${extra}${url}; echo " exit $?"` }, id));
      h.model.push(
        curl(`http://${host.address}:${host.port}/plain`, 'tu_public'),
        curl(`http://${host.address}:${host.port}/tunnel`, 'tu_public_tunnel', '--proxytunnel '),
        curl('http://169.254.169.254/latest/meta-data/', 'tu_metadata'),
        curl(`http://[::ffff:169.254.169.254]/latest/meta-data/`, 'tu_metadata_mapped'),
        // The sandbox's NO_PROXY names loopback (its own); --noproxy '' sends it to the proxy all the same.
        curl(`http://127.0.0.1:${temporalPort}/`, 'tu_temporal', "--noproxy '' --proxytunnel "),
        curl(`http://${hostIp}:${port}/`, 'tu_worker'),
        curl(`http://${host.hostSide}:${port}/`, 'tu_worker_veth'),
        curl(`http://10.1.2.3:${port}/`, 'tu_private'),
        reply('Done.'),
      );
      const agent = testAgent({ sandbox: { memory_mb: 256, network: { policy: 'unrestricted' } } });
      const handle = await startSession(h.client, h.queue, { agent }, 'reach out');
      await waitIdle(handle, 'end_turn', 9);
      const results = toolResults(h.model.requests.at(-1)!);
      expect(results.get('tu_public')?.content).toBe(`hello from test host ${host.address}:${host.port} /plain\n exit 0`);
      expect(results.get('tu_public_tunnel')?.content).toBe(`hello from test host ${host.address}:${host.port} /tunnel\n exit 0`);
      for (const id of ['tu_metadata', 'tu_metadata_mapped', 'tu_worker', 'tu_worker_veth', 'tu_private']) {
        expect(results.get(id)?.content, id).toContain('does not lead to the internet');
        expect(results.get(id)?.content, id).not.toContain('hello from');
      }
      expect(results.get('tu_temporal')?.content).toMatch(/403/);
      const denials = (await sessionEvents(h.client, handle)).filter((e) => e.type === 'sandbox.egress_denied');
      expect(denials.map((d) => [d.host, d.tool_use_id])).toEqual([
        ['169.254.169.254', 'tu_metadata'],
        [expect.stringMatching(/^\[?::ffff:(169\.254\.169\.254|a9fe:a9fe)\]?$/), 'tu_metadata_mapped'],
        ['127.0.0.1', 'tu_temporal'],
        [hostIp, 'tu_worker'],
        [host.hostSide, 'tu_worker_veth'],
        ['10.1.2.3', 'tu_private'],
      ]);
      const info = await docker.getContainer(sandboxName(handle.workflowId)).inspect();
      expect(info.HostConfig.NetworkMode).toBe('none');
      await handle.cancel();
    } finally {
      await host.close();
    }
  });

  it('gives a sandbox with default networking no way out at all', async () => {
    h.model.push(
      reply(
        toolUse(
          'bash',
          {
            command:
              `env | grep -i proxy; curl -sS -m 5 http://${hostIp}:${port}/; echo "host $?"; ` +
              `curl -sS -m 5 -x http://127.0.0.1:47012 http://allowed.test:${port}/; echo "proxy $?"; ` +
              'ls /run/tandem-host 2>&1; ip -o addr 2>/dev/null | grep -v " lo " ; cat /proc/net/route | wc -l',
          },
          'tu_none',
        ),
      ),
      reply('Nothing.'),
    );
    const handle = await startSession(h.client, h.queue, { agent: testAgent() }, 'reach out');
    await waitIdle(handle, 'end_turn', 2);
    const out = toolResults(h.model.requests.at(-1)!).get('tu_none')?.content ?? '';
    expect(out).not.toContain('hello from');
    expect(out).toMatch(/host [1-9]/);
    expect(out).toMatch(/proxy [1-9]/);
    expect(out).not.toMatch(/HTTP_PROXY=/i);
    // The host directory holds the toolbox channel only: no proxy socket to reach.
    expect(out).toMatch(/^ch-[\w-]+\.sock$/m);
    expect(out).not.toMatch(/egress\.sock|git\.sock/);
    expect(out.trim().endsWith('1')).toBe(true); // the routing table has its header line only
    await handle.cancel();
  });
});
