/**
 * The verbs that manage sessions without following them (`start`, `ls`, `show`, `agents validate`) and the
 * command's manners (`--help` everywhere, one-sentence errors), against the real dev server. The verbs run in this
 * process (`runCli`), except where what is tested is the process (`bin/tandem`'s own start and exit).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { inject } from 'vitest';
import { apiError, reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { freePort } from '../helpers/global-setup.js';
import { sandboxName, startWorker, testClient, uniqueQueue, waitFor, workerEnv } from '../helpers/env.js';
import { runTandem, runTandemHere, VERBS } from '../helpers/cli.js';

let client: Client;
let model: MessagesServer;
let worker: Awaited<ReturnType<typeof startWorker>>;
const queue = uniqueQueue('cliv');
const agentName = `verbs-${queue}`;
const dir = mkdtempSync(join(tmpdir(), 'tandem-verbs-'));
const agentFile = join(dir, 'agent.yaml');
const askFile = join(dir, 'ask.yaml');
const env = () => ({ ...workerEnv(queue, model.url), TANDEM_UI_ADDRESS: 'http://127.0.0.1:9999' });
const tandem = (args: string[]) => runTandemHere(args, env());

beforeAll(async () => {
  writeFileSync(agentFile, `name: ${agentName}\nmodel: claude-sonnet-5-5\ntools:\n  - type: agent_toolset_20260401\n`);
  writeFileSync(
    askFile,
    [
      `name: ${agentName}-ask`,
      'model: claude-sonnet-5-5',
      'tools:',
      '  - type: agent_toolset_20260401',
      '    configs:',
      '      - { name: bash, permission_policy: { type: always_ask } }',
      '',
    ].join('\n'),
  );
  client = await testClient();
  model = await startMessagesServer();
  worker = await startWorker(queue, model.url);
});

afterAll(async () => {
  await worker?.shutdown();
  await worker?.done;
  await model?.close();
});

describe('tandem --help', () => {
  it('every verb has a --help that names its usage, and the list of verbs is complete', async () => {
    // The verbs the command lists itself (top level, and the groups' sub-verbs) are the ones checked below.
    const commandsOf = (help: string) =>
      [...(help.split('Commands:')[1] ?? '').matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((n) => n !== 'help');
    const top = commandsOf((await runTandemHere(['--help'])).stdout);
    const listed = [...top.map((v) => [v])];
    for (const group of ['agents', 'vault', 'files'])
      listed.push(...commandsOf((await runTandemHere([group, '--help'])).stdout).map((v) => [group, v]));
    expect(listed.map((v) => v.join(' ')).sort()).toEqual(VERBS.map((v) => v.join(' ')).sort());
    const runs = [];
    for (let i = 0; i < VERBS.length; i += 6)
      runs.push(...(await Promise.all(VERBS.slice(i, i + 6).map((v) => runTandemHere([...v, '--help'])))));
    for (const [i, run] of runs.entries()) {
      const verb = VERBS[i]!.join(' ');
      expect(run.code, verb).toBe(0);
      expect(run.stdout, verb).toContain(`Usage: tandem ${verb}`);
    }
  });
});

describe('start, ls, show', () => {
  it('start prints the id; ls finds it by status and agent; show reports turn, usage, cost and the UI link', async () => {
    model.push(reply(toolUse('bash', { command: 'echo verbs' }, 'tu_verbs')), reply('Printed it.'));
    const start = await tandem(['start', agentFile, 'print something', '--json', '--title', 'verbs test']);
    expect(start.code, start.stderr).toBe(0);
    const started = JSON.parse(start.stdout) as { id: string; agent: string; task_queue: string };
    expect(started).toMatchObject({ agent: agentName, task_queue: queue });
    expect(started.id).toMatch(/^sesn_[a-z2-7]{20}$/);

    const idle = await waitFor(
      () => tandem(['show', started.id, '--json']),
      (r) => r.code === 0 && JSON.parse(r.stdout).turn === 2 && JSON.parse(r.stdout).status === 'idle',
      60_000,
      'the session to answer',
    );
    const shown = JSON.parse(idle.stdout);
    expect(shown).toMatchObject({
      id: started.id,
      agent: agentName,
      model: 'claude-sonnet-5-5',
      title: 'verbs test',
      workflow_status: 'RUNNING',
      status: 'idle',
      stop_reason: { type: 'end_turn' },
      turn: 2,
      pending: [],
      last_error: null,
      price_basis: 'claude-sonnet-5-5',
      ui_url: `http://127.0.0.1:9999/namespaces/default/workflows/${started.id}`,
    });
    expect(shown.usage.input_tokens).toBeGreaterThan(0);
    expect(shown.cost_usd).toBeCloseTo((shown.usage.input_tokens * 2 + shown.usage.output_tokens * 10) / 1e6, 9);
    expect(shown.sandboxes).toHaveLength(1);
    expect(shown.sandboxes[0].name).toBe(sandboxName(started.id));

    const human = await tandem(['show', started.id]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^status\s+idle \(end_turn\)$/m);
    expect(human.stdout).toMatch(/^cost\s+~\$\d+\.\d{4} \(claude-sonnet-5-5 list prices\)$/m);
    expect(human.stdout).toContain(`ui          http://127.0.0.1:9999/namespaces/default/workflows/${started.id}`);

    // Visibility catches up with the search attributes a moment later.
    const listed = await waitFor(
      () => tandem(['ls', '--agent', agentName, '--status', 'idle', '--json']),
      (r) => r.code === 0 && (JSON.parse(r.stdout) as Array<{ id: string }>).some((s) => s.id === started.id),
      30_000,
      'ls to list the session',
    );
    const rows = JSON.parse(listed.stdout) as Array<{ id: string; status: string; agent: string }>;
    expect(rows.every((r) => r.agent === agentName && r.status === 'idle')).toBe(true);
    const running = await tandem(['ls', '--agent', agentName, '--status', 'running', '--json']);
    expect(JSON.parse(running.stdout)).toEqual([]);
    const table = await tandem(['ls', '--agent', agentName]);
    expect(table.stdout.split('\n')[0]).toMatch(/^SESSION\s+STATUS\s+AGENT\s+STARTED$/);
    expect(table.stdout).toMatch(new RegExp(`${started.id}\\s+idle\\s+${agentName}\\s+\\d{4}-`));
    await client.workflow.getHandle(started.id).cancel();
    model.assertDone();
  });

  it('start without a message waits idle; show lists a pending confirmation, then the last error', async () => {
    const start = await tandem(['start', askFile]);
    expect(start.code, start.stderr).toBe(0);
    const id = start.stdout.trim();
    expect(id).toMatch(/^sesn_/);
    await waitFor(() => tandem(['show', id, '--json']), (r) => r.code === 0 && JSON.parse(r.stdout).status === 'idle', 30_000);
    expect(JSON.parse((await tandem(['show', id, '--json'])).stdout).turn).toBe(0);

    model.push(reply(toolUse('bash', { command: 'rm -rf /workspace/x' }, 'tu_ask')));
    expect((await tandem(['send', id, 'clean up'])).code).toBe(0);
    const waiting = await waitFor(
      () => tandem(['show', id, '--json']),
      (r) => r.code === 0 && JSON.parse(r.stdout).pending?.length === 1,
      30_000,
    );
    expect(JSON.parse(waiting.stdout)).toMatchObject({
      stop_reason: { type: 'requires_action', event_ids: ['tu_ask'] },
      pending: [{ tool_use_id: 'tu_ask', name: 'bash', kind: 'confirmation', input: { command: 'rm -rf /workspace/x' } }],
    });
    expect((await tandem(['show', id])).stdout).toMatch(/^pending\s+tu_ask bash \(confirmation\) \{"command":"rm -rf \/workspace\/x"\}$/m);

    model.push(apiError(400, { message: 'scripted refusal' }));
    const denied = await tandem(['confirm', id, 'tu_ask', 'deny', '--message', 'not that directory']);
    expect(denied.code, denied.stderr).toBe(0);
    const failed = await waitFor(
      () => tandem(['show', id, '--json']),
      (r) => r.code === 0 && JSON.parse(r.stdout).stop_reason?.type === 'retries_exhausted',
      30_000,
    );
    expect(JSON.parse(failed.stdout).last_error).toMatchObject({ type: 'Model.BadRequest', retryable: false });
    const log = await tandem(['events', id, '--json', '--type', 'user.tool_confirmation']);
    expect(JSON.parse(log.stdout.trim())).toMatchObject({ tool_use_id: 'tu_ask', result: 'deny', deny_message: 'not that directory' });
    expect((await tandem(['show', id])).stdout).toMatch(/^last error\s+Model\.BadRequest: model API 400/m);
    await client.workflow.getHandle(id).cancel();
    model.assertDone();
  });
});

describe('confirm and answer', () => {
  it('allows an always_ask call and answers a custom tool from the command line', async () => {
    const file = join(dir, 'both.yaml');
    writeFileSync(
      file,
      [
        `name: ${agentName}-both`,
        'model: claude-sonnet-5-5',
        'tools:',
        '  - type: agent_toolset_20260401',
        '    configs:',
        '      - { name: bash, permission_policy: { type: always_ask } }',
        '  - { type: custom, name: lookup, description: Look it up, input_schema: { type: object } }',
        '',
      ].join('\n'),
    );
    model.push(reply(toolUse('bash', { command: 'echo confirmed' }, 'tu_c')), reply(toolUse('lookup', {}, 'tu_l')), reply('All done.'));
    const run = await tandem(['run', file, 'go']);
    expect(run.code, run.stderr).toBe(0);
    const id = /session (sesn_\w+) started/.exec(run.stderr)![1]!;
    expect(run.stderr).toContain(`tandem confirm ${id} <id> allow|deny`);
    const allowed = await tandem(['confirm', id, 'tu_c', 'allow', '--wait']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toMatch(/agent\.tool_result\s+ok confirmed/);
    expect(allowed.stderr).toContain(`tandem answer ${id} <id>`);
    const answered = await tandem(['answer', id, 'tu_l', 'forty-two', '--wait']);
    expect(answered.code, answered.stderr).toBe(0);
    expect(answered.stdout).toContain('All done.');
    const bad = await tandem(['confirm', id, 'tu_c', 'maybe']);
    expect(bad).toMatchObject({ code: 1, stderr: 'tandem: the decision is "allow" or "deny", not "maybe"\n' });
    await client.workflow.getHandle(id).cancel();
  });
});

describe('errors a user sees', () => {
  it('an unknown session is one sentence naming the server, exit 1', async () => {
    for (const args of [['show', 'sesn_nope'], ['send', 'sesn_nope', 'hi'], ['events', 'sesn_nope'], ['wake', 'sesn_nope']]) {
      const run = await tandem(args);
      expect(run.code, args.join(' ')).toBe(1);
      expect(run.stderr.trim()).toBe(`tandem: no session "sesn_nope" on ${inject('temporalAddress')}`);
    }
  });

  it('an unreachable Temporal names the address and how to start one', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const run = await runTandem(['ls'], { ...env(), TEMPORAL_ADDRESS: address });
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(new RegExp(`^tandem: cannot reach Temporal at ${address} \\(.*\\); start a dev server with "tandem dev"`));
  });

  it('agents validate: one OK line and exit 0, or file:line:col and exit 2', async () => {
    const ok = await tandem(['agents', 'validate', 'examples/coding-agent.yaml']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim()).toBe('OK examples/coding-agent.yaml: agent coding-agent, model claude-sonnet-5-5, tools bash read write edit glob grep');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'name: x\nmodel: claude-sonnet-5-5\ntools:\n  - type: agent_toolset_20260401\n    configs:\n      - name: bsh\n');
    const run = await tandem(['agents', 'validate', bad]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim()).toBe(`tandem: ${bad}:6:15: tools[0].configs[0].name: expected one of bash|read|write|edit|glob|grep (got "bsh")`);
    const missing = await tandem(['agents', 'validate', join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(join(dir, 'nope.yaml'));
  });

  it('a usage error (unknown verb or option, missing argument) exits 2 with a suggestion; help exits 0', async () => {
    // bin/tandem exits with the code the verb ended with.
    for (const typo of [await tandem(['frok', 'sesn_x']), await runTandem(['frok', 'sesn_x'], env())]) {
      expect(typo.code).toBe(2);
      expect(typo.stderr).toContain("error: unknown command 'frok'");
      expect(typo.stderr).toContain('(Did you mean fork?)');
    }
    const option = await tandem(['ls', '--limt', '3']);
    expect(option.code).toBe(2);
    expect(option.stderr).toContain("error: unknown option '--limt'");
    expect(option.stderr).toContain('(Did you mean --limit?)');
    const missing = await tandem(['fork', 'sesn_x']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("error: required option '--at <event-id>' not specified");
    const help = await tandem(['fork', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: tandem fork [options] <session-id>');
  });

  it('ls rejects a bad --limit in one sentence', async () => {
    const run = await tandem(['ls', '--limit', 'lots']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe('tandem: --limit takes a whole number of at least 1 (got "lots")');
  });
});
