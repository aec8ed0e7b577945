/**
 * The plain `temporal` CLI block of docs/cli.md, run verbatim with bash against the dev server: only the environment
 * variables the block itself reads (TEMPORAL_ADDRESS, TANDEM_TASK_QUEUE, SESSION) point it at this test's server,
 * task queue and session id.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { reply, type RecordedRequest } from '../fakes/messages-server.js';
import { sessionEvents, useHarness, waitFor } from '../helpers/env.js';
import { repoRoot } from '../helpers/cli.js';

const lastUserText = (r: RecordedRequest) => {
  const m = r.body.messages?.at(-1);
  const blocks = Array.isArray(m?.content) ? (m.content as Array<{ type: string; text?: string }>) : [];
  return blocks.filter((b) => b.type === 'text').map((b) => b.text).join(' ');
};

const h = useHarness('plain', { responder: (r) => reply(`answer to: ${lastUserText(r)}`) });

/** The fenced shell block of docs/cli.md that starts with `firstLine`. */
export function docsBlock(firstLine: string): string {
  const doc = readFileSync(join(repoRoot, 'docs', 'cli.md'), 'utf8');
  const blocks = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const block = blocks.find((b) => b.startsWith(firstLine));
  if (!block) throw new Error(`docs/cli.md has no sh block starting with "${firstLine}"`);
  return block;
}

describe('plain temporal CLI', () => {
  it('the docs/cli.md block starts, steers, wakes, lists and queries a session', async () => {
    const block = docsBlock('# A session with nothing but the temporal CLI');
    const session = `sesn_plain_${Date.now()}`;
    const cli = inject('temporalCli');
    const run = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', block], {
      env: {
        PATH: `${dirname(cli)}:${process.env.PATH}`,
        HOME: process.env.HOME ?? '/tmp',
        TEMPORAL_ADDRESS: inject('temporalAddress'),
        TANDEM_TASK_QUEUE: h.queue,
        SESSION: session,
      },
      timeout: 60_000,
    });
    // The query printed the session's state.
    expect(run.stdout).toMatch(new RegExp(`"id":\\s*"${session}"`));

    // The session answered both messages, each once.
    const handle = h.client.workflow.getHandle(session);
    const events = await waitFor(
      () => sessionEvents(h.client, handle),
      (es) =>
        es.some((e) => e.type === 'agent.message' && JSON.stringify(e.content).includes('Now say it in French.')) &&
        es.at(-1)?.type === 'session.status_idle',
      60_000,
      'the session to answer both messages',
    );
    const users = events.filter((e) => e.type === 'user.message').map((e) => JSON.stringify(e.content));
    expect(users).toHaveLength(2);
    expect(users[0]).toContain('Say hello.');
    expect(users[1]).toContain('Now say it in French.');
    expect(events.filter((e) => e.type === 'session.error')).toEqual([]);
    const described = await handle.describe();
    expect(await described.staticSummary()).toBe('plain temporal CLI session');

    // The list in the block found it once visibility caught up; check the same query from here.
    const listed = await waitFor(
      async () => {
        const ids: string[] = [];
        for await (const w of h.client.workflow.list({ query: `TandemAgent="plain-cli" AND TandemStatus="idle"` })) ids.push(w.workflowId);
        return ids;
      },
      (ids) => ids.includes(session),
      30_000,
    );
    expect(listed).toContain(session);
    await handle.cancel();
  });
});
