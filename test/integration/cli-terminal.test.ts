/**
 * Escape sequences in a session log never reach the operator's terminal: a real sandbox prints them, the scripted
 * model writes them into its message, its tool input and its error, the title carries them, and `tandem run`,
 * `events`, `show` and `ls` (run as processes) print them visibly but inert. `--json` keeps every byte (escaped).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { apiError, reply, text, toolUse, startMessagesServer, type MessagesServer } from '../fakes/messages-server.js';
import { runTandem, type CliRun } from '../helpers/cli.js';
import { startWorker, testClient, uniqueQueue, workerEnv } from '../helpers/env.js';

let client: Client;
let model: MessagesServer;
let worker: Awaited<ReturnType<typeof startWorker>>;
const queue = uniqueQueue('cliterm');

/** Anything a terminal would act on, other than line feed and tab. */
const ACTIVE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

/** Runs `tandem <args>` against this file's worker and scripted model. */
function tandem(args: string[]): Promise<CliRun> {
  return runTandem(args, workerEnv(queue, model.url));
}

beforeAll(async () => {
  client = await testClient();
  model = await startMessagesServer();
  worker = await startWorker(queue, model.url);
});

afterAll(async () => {
  await worker?.shutdown();
  await worker?.done;
  await model?.close();
});

describe('hostile text in a session log', () => {
  it('reaches the terminal visible and inert through run, events, show and ls; --json keeps it exactly', async () => {
    // In the sandbox: a clipboard write (OSC 52), a screen clear, an 8-bit CSI, a bidi override and a hyperlink
    // whose text hides its target (OSC 8), as a hostile repository's test output could print them.
    const command =
      "true '\x1b[2J\u009b2J\u202e'; " + // the tool input itself carries them too
      "printf 'out:\\033]52;c;ZXZpbA==\\007\\033[2J\\302\\2332J\\342\\200\\256txt.exe " +
      "\\033]8;;https://evil.example/\\033\\\\https://docs.example/\\033]8;;\\033\\\\:end\\n'";
    const message = 'Done.\x1b]0;window title\x07 \x1b[1A\x1b[2Krewritten line\r\u202eesrever';
    const failure = 'scripted failure \x1b]52;c;ZXZpbA==\x07\x1bc';
    model.push(
      reply(text('Running it.\x1b[?1049h'), toolUse('bash', { command }, 'tu_term')),
      reply(message),
      apiError(400, { message: failure }),
    );
    const title = 'title \x1b]0;owned\x07\u2066x\u2069';
    const run = await tandem(['run', 'examples/coding-agent.yaml', 'print the test output', '--title', title]);
    const id = /session (sesn_[a-z0-9]+) started/.exec(run.stderr)?.[1];
    expect(id, run.stderr).toBeDefined();
    expect(run.stdout).toMatch(/agent\.tool_result\s+ok out:␛\]52;c;ZXZpbA==␇␛\[2J/);
    expect(run.stdout).toContain('<U+009B>2J<U+202E>txt.exe ␛]8;;https://evil.example/␛\\https://docs.example/');
    expect(run.stdout).toContain('Done.␛]0;window title␇ ␛[1A␛[2Krewritten line <U+202E>esrever');

    // The failure of the next turn: its message is in the log and in `show`'s last error.
    expect((await tandem(['send', id!, 'and again', '--wait'])).code).toBe(1);
    const events = await tandem(['events', id!]);
    const show = await tandem(['show', id!]);
    const ls = await tandem(['ls', '--limit', '50']);
    expect(show.stdout).toContain(`${'title'.padEnd(12)}title ␛]0;owned␇<U+2066>x<U+2069>`);
    expect(show.stdout).toMatch(/last error {2}Model\.BadRequest: .*scripted failure ␛\]52;c;ZXZpbA==␇␛c/);
    expect(events.stdout).toMatch(/session\.error\s+Model\.BadRequest: .*scripted failure ␛\]52;c;ZXZpbA==␇␛c/);
    expect(events.stdout).toMatch(/agent\.tool_use\s+bash \{"command":"true '\\u001b\[2J<U\+009B>2J<U\+202E>'; printf /);

    for (const [name, out] of Object.entries({ run: run.stdout + run.stderr, events: events.stdout, show: show.stdout, ls: ls.stdout }))
      expect(out, `tandem ${name} printed a control character`).not.toMatch(ACTIVE);

    // --json is for programs: every byte is there, and still nothing acts on a terminal.
    const json = await tandem(['events', id!, '--json']);
    expect(json.stdout).not.toMatch(ACTIVE);
    const parsed = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; content?: Array<{ text: string }>; input?: { command: string } });
    const result = parsed.find((e) => e.type === 'agent.tool_result')!.content![0]!.text;
    expect(result).toContain('out:\x1b]52;c;ZXZpbA==\x07\x1b[2J\u009b2J\u202etxt.exe');
    expect(parsed.find((e) => e.type === 'agent.tool_use')!.input!.command).toBe(command);
    expect(parsed.find((e) => e.type === 'agent.message' && e.content![0]!.text === message)).toBeDefined();
    const shown = JSON.parse((await tandem(['show', id!, '--json'])).stdout) as { title: string };
    expect(shown.title).toBe(title);

    await client.workflow.getHandle(id!).cancel();
    model.assertDone();
  });
});
