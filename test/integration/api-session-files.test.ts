/**
 * Files in sessions through the official SDK, in real sandboxes: a file resource is mounted read-only and read by
 * the agent; a file added mid-session shows at the next tool call and a removed one is gone from it; what the agent
 * leaves in /mnt/session/outputs is listed for the session and downloads byte for byte; what cannot be mounted is
 * refused naming the field. The file store is shared by the API server and the worker, as on one host.
 */
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { readUntil, reply, toolUse, useApiHarness, type ApiStreamEvent } from '../helpers/api.js';
import { recordSession, workerEnv } from '../helpers/env.js';
import { runTandemHere } from '../helpers/cli.js';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const h = useApiHarness('api-session-files', {
  assertDone: true,
  record: 'session-files',
  // The worker's store is the API server's (a directory made by the harness).
  worker: () => ({ env: { TANDEM_SNAPSHOT_STORE: h.filesDir } }),
});
const client = () => new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
const message = (err: unknown) => ((err as InstanceType<typeof Anthropic.APIError>).error as { error: { message: string } }).error.message;
const idle = (e: ApiStreamEvent) => e.type === 'session.status_idle';

/** The text of the tool result of `toolUseId` among `events`. */
function resultOf(events: ApiStreamEvent[], toolUseId: string): { text: string; is_error: unknown } {
  const use = events.find((e) => e.type === 'agent.tool_use' && e.tool_use_id === toolUseId);
  const result = events.find((e) => e.type === 'agent.tool_result' && e.tool_use_id === use?.id);
  const text = ((result?.content ?? []) as Array<{ text?: string }>).map((b) => b.text ?? '').join('');
  return { text, is_error: result?.is_error };
}

describe('files in sessions through the official SDK', () => {
  it('mounts files read-only, changes them between tool calls, and publishes what the agent leaves in outputs', async () => {
    const c = client();
    const csv = 'city,population\nLyon,522250\n';
    const cities = await c.beta.files.upload({ file: await toFile(Buffer.from(csv), 'cities.csv', { type: 'text/csv' }) });
    const agent = await c.beta.agents.create({ name: 'analyst', model: 'claude-sonnet-5-5', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await c.beta.environments.create({ name: 'files-env' });
    const session = await c.beta.sessions.create({
      agent: agent.id,
      environment_id: env.id,
      resources: [{ type: 'file', file_id: cities.id }],
    });
    recordSession(h.client.workflow.getHandle(session.id));
    const mounted = `/mnt/session/uploads/${cities.id}`;
    expect(session.resources).toEqual([expect.objectContaining({ type: 'file', file_id: cities.id, mount_path: mounted })]);

    // The agent reads the file, cannot change it, and leaves a report in outputs (through the file tool).
    const report = '# Report\nLyon: 522250\n';
    h.model.push(
      reply(
        toolUse('bash', { command: `cat ${mounted}; echo changed > ${mounted} 2>&1 || echo read-only` }, 'tu_read'),
        toolUse('write', { file_path: '/mnt/session/outputs/report.md', content: report }, 'tu_write'),
      ),
      reply('Wrote the report.'),
    );
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'report' }] }] });
    const first = await readUntil(stream, idle);
    const read = resultOf(first, 'tu_read');
    expect(read.text).toContain('Lyon,522250');
    expect(read.text).toMatch(/read-only\s*$/); // the write was refused
    expect(resultOf(first, 'tu_write').is_error).toBe(false);

    // The output is the session's file: listed by its scope, downloadable byte for byte.
    const outputs = (await c.beta.files.list({ scope_id: session.id })).data;
    expect(outputs).toEqual([expect.objectContaining({ filename: 'report.md', mime_type: 'text/markdown', size_bytes: report.length, scope: { type: 'session', id: session.id } })]);
    expect(await (await c.beta.files.download(outputs[0]!.id)).text()).toBe(report);

    // A second file added mid-session is there at the next tool call; the first, removed, is not.
    const notes = await c.beta.files.upload({ file: await toFile(Buffer.from('remember the river\n'), 'notes.txt') });
    const added = await c.beta.sessions.resources.add(session.id, { type: 'file', file_id: notes.id, mount_path: '/mnt/session/uploads/docs/notes.txt' });
    expect(added).toMatchObject({ type: 'file', file_id: notes.id, mount_path: '/mnt/session/uploads/docs/notes.txt' });
    expect(added.id).toMatch(/^sesrsc_/);
    const firstResource = (session.resources[0] as Anthropic.Beta.Sessions.BetaManagedAgentsFileResource).id;
    expect(await c.beta.sessions.resources.delete(firstResource, { session_id: session.id })).toEqual({ id: firstResource, type: 'session_resource_deleted' });
    const listed = (await c.beta.sessions.resources.list(session.id)).data;
    expect(listed).toEqual([added]);
    expect(await c.beta.sessions.resources.retrieve(added.id, { session_id: session.id })).toEqual(added);

    // The agent changes its report and removes nothing else; the published file follows.
    h.model.push(
      reply(toolUse('bash', { command: `ls -R /mnt/session/uploads; cat /mnt/session/uploads/docs/notes.txt; echo more >> /mnt/session/outputs/report.md` }, 'tu_ls')),
      reply('Done.'),
    );
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'again' }] }] });
    const second = await readUntil(stream, idle);
    stream.controller.abort();
    const ls = resultOf(second, 'tu_ls').text;
    expect(ls).toContain('remember the river');
    expect(ls).not.toContain(cities.id);
    expect(await (await c.beta.files.download(outputs[0]!.id)).text()).toBe(`${report}more\n`);
    const log = (await c.beta.sessions.events.list(session.id, { limit: 1000 })).data as unknown as ApiStreamEvent[];
    expect(log.filter((e) => e.type.startsWith('session.resource_')).map((e) => e.type)).toEqual(['session.resource_added', 'session.resource_removed']);

    // What cannot be mounted or changed is a 400 that names it.
    // Each call is made when its turn comes (an unawaited refusal would be an unhandled rejection).
    const refused: Array<[() => Promise<unknown>, RegExp]> = [
      [() => c.beta.sessions.resources.add(session.id, { type: 'file', file_id: notes.id, mount_path: '/etc/notes' }), /^mount_path: must lie under \/mnt\/session\/uploads\//],
      [() => c.beta.sessions.resources.add(session.id, { type: 'file', file_id: notes.id, mount_path: '/mnt/session/uploads/a/../b' }), /^mount_path: must be a normalized path/],
      [() => c.beta.sessions.resources.add(session.id, { type: 'file', file_id: notes.id, mount_path: '/mnt/session/uploads/docs/notes.txt/x' }), /^mount_path: .* overlaps \/mnt\/session\/uploads\/docs\/notes\.txt/],
      [() => c.beta.sessions.resources.add(session.id, { type: 'file', file_id: 'file_000000000000000000000000' }), /^file_id: file "file_000000000000000000000000" was not found/],
      [() => c.beta.sessions.resources.update(added.id, { session_id: session.id, authorization_token: 'tok' }), /^authorization_token: only github_repository resources take a token/],
    ];
    for (const [call, text] of refused) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.BadRequestError);
      expect(message(err)).toMatch(text);
    }
    const gone = await c.beta.sessions.resources.retrieve('sesrsc_nope', { session_id: session.id }).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(Anthropic.NotFoundError);
    expect(message(gone)).toBe(`session "${session.id}" has no resource "sesrsc_nope"`);
    await c.beta.sessions.delete(session.id);
  });

  it('mounts a file from the CLI in a running session, and the CLI gets an output with the same bytes', async () => {
    const c = client();
    const agent = await c.beta.agents.create({ name: 'cli-files', model: 'claude-sonnet-5-5', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await c.beta.environments.create({ name: 'cli-files-env' });
    const session = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const cli = { ...workerEnv(h.queue, h.model.url), TANDEM_SNAPSHOT_STORE: h.filesDir };
    const dir = mkdtempSync(join(tmpdir(), 'tandem-cli-files-'));
    writeFileSync(join(dir, 'data.txt'), 'from the command line\n');

    const put = await runTandemHere(['files', 'put', join(dir, 'data.txt'), '--session', session.id, '--mount-path', '/mnt/session/uploads/cli/data.txt', '--json'], cli);
    expect(put.code).toBe(0);
    const { file, resource } = JSON.parse(put.stdout) as { file: { id: string }; resource: { id: string; mount_path: string } };
    expect(resource.mount_path).toBe('/mnt/session/uploads/cli/data.txt');
    expect((await c.beta.sessions.resources.list(session.id)).data).toEqual([expect.objectContaining({ id: resource.id, file_id: file.id })]);
    expect((await runTandemHere(['show', session.id], cli)).stdout).toContain(`files       ${resource.id} ${file.id} at /mnt/session/uploads/cli/data.txt`);
    const bad = await runTandemHere(['files', 'put', join(dir, 'data.txt'), '--session', session.id, '--mount-path', '/etc/data.txt'], cli);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('mount path /etc/data.txt: must lie under /mnt/session/uploads/');

    h.model.push(reply(toolUse('bash', { command: 'cp /mnt/session/uploads/cli/data.txt /mnt/session/outputs/copy.txt && cat /mnt/session/outputs/copy.txt' }, 'tu_cp')), reply('Copied.'));
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'copy' }] }] });
    const events = await readUntil(stream, idle);
    stream.controller.abort();
    expect(resultOf(events, 'tu_cp').text).toContain('from the command line');

    const ls = await runTandemHere(['files', 'ls', '--session', session.id, '--json'], cli);
    const outputs = JSON.parse(ls.stdout) as Array<{ id: string; filename: string }>;
    expect(outputs.map((f) => f.filename)).toEqual(['copy.txt']);
    const out = join(dir, 'copy.txt');
    expect((await runTandemHere(['files', 'get', outputs[0]!.id, '-o', out], cli)).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('from the command line\n');

    expect((await runTandemHere(['files', 'unmount', session.id, resource.id], cli)).code).toBe(0);
    expect((await c.beta.sessions.resources.list(session.id)).data).toEqual([]);
    const again = await runTandemHere(['files', 'unmount', session.id, resource.id], cli);
    expect(again.stderr).toContain(`session ${session.id}: the session has no resource "${resource.id}"`);
    await c.beta.sessions.delete(session.id);
  });

  it('refuses resources at creation that are neither files of the store nor repositories, naming each', async () => {
    const c = client();
    const agent = await c.beta.agents.create({ name: 'refused-resources', model: 'claude-sonnet-5-5' });
    const env = await c.beta.environments.create({ name: 'files-refusals' });
    const file = await c.beta.files.upload({ file: await toFile(Buffer.from('x'), 'x.txt') });
    const cases: Array<[unknown[], RegExp]> = [
      [[{ type: 'memory_store', memory_store_id: 'memstore_1' }], /^resources\[0\]\.type: Tandem has no memory stores yet/],
      [[{ type: 'file', file_id: file.id }, { type: 'file', file_id: file.id }], /^resources\[1\]\.mount_path: .*overlaps/],
      [[{ type: 'file', file_id: file.id, mount_path: '/workspace/x.txt' }], /^resources\[0\]\.mount_path: must lie under/],
    ];
    for (const [resources, text] of cases) {
      const params = { agent: agent.id, environment_id: env.id, resources } as unknown as Anthropic.Beta.Sessions.SessionCreateParams;
      const err = await c.beta.sessions.create(params).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.BadRequestError);
      expect(message(err)).toMatch(text);
    }
  });
});
