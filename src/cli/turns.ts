/**
 * The verbs that talk to a running session: `run`, `send`, `interrupt`, `wake`, `confirm`, `answer` and `outcome`.
 * Each is an options object and a run function; `addTurnCommands` wires them to the parser.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { loadAgentFile } from '../config/agent.js';
import type { TandemClient } from '../client/index.js';
import type { SessionEvent } from '../log/events.js';
import { defaultVaultPath, Vault } from '../vault/index.js';
import { explainIdle, printUntilIdle } from './follow.js';
import { action, connect, Exit, wholeNumber, type Io } from './io.js';
import { forTerminal } from './terminal.js';

export interface RunOptions {
  /** The agent file (YAML or JSON). */
  file: string;
  /** The first user message. */
  message: string;
  id?: string;
  title?: string;
  json?: boolean;
  /** Check that this host's vault holds every secret the agent names (default true). */
  secretCheck?: boolean;
}

/** `tandem run`: starts a session and prints its events until it goes idle; exits as `explainIdle` says. */
export async function runRun(io: Io, o: RunOptions): Promise<never> {
  const agent = await loadAgentFile(o.file);
  const vault = o.secretCheck !== false ? new Vault(defaultVaultPath(io.env), io.env) : undefined;
  const client = await connect(io);
  const sessionId = await client.start({ agent, message: o.message, sessionId: o.id, title: o.title, vault });
  if (!o.json) io.err(`session ${sessionId} started (agent ${forTerminal(agent.name)})`);
  const idle = await printUntilIdle(io, client, sessionId, { json: o.json });
  throw new Exit(explainIdle(io, sessionId, idle));
}

/**
 * Sends something to a session; with `wait`, prints what follows until it goes idle after `sent` (the event of what
 * was sent) and exits accordingly.
 */
async function sendAndFollow(
  io: Io,
  sessionId: string,
  wait: boolean | undefined,
  send: (c: TandemClient) => Promise<void>,
  sent: (e: SessionEvent) => boolean,
): Promise<void> {
  const client = await connect(io);
  const before = (await client.getEvents(sessionId)).at(-1)?.id; // also: one clear error for an unknown session
  await send(client);
  if (wait) throw new Exit(explainIdle(io, sessionId, await printUntilIdle(io, client, sessionId, { after: before, sent })));
}

export interface SendOptions {
  sessionId: string;
  message: string;
  /** Client-chosen event id: a retried send with the same id is applied once. */
  id?: string;
  wait?: boolean;
}

/** `tandem send`: a user message (a new turn, or steering while the session works). */
export function sendRun(io: Io, o: SendOptions): Promise<void> {
  const sent = (e: SessionEvent) => e.type === 'user.message' && (o.id === undefined || e.client_id === o.id);
  return sendAndFollow(io, o.sessionId, o.wait, (c) => c.sendMessage(o.sessionId, o.message, o.id), sent);
}

export interface ConfirmOptions {
  sessionId: string;
  toolUseId: string;
  /** `allow` or `deny`. */
  decision: string;
  /** With deny: what the model is told. */
  message?: string;
  wait?: boolean;
}

/** `tandem confirm`: allows or denies a tool call the session waits on. */
export async function confirmRun(io: Io, o: ConfirmOptions): Promise<void> {
  if (o.decision !== 'allow' && o.decision !== 'deny') throw new Error(`the decision is "allow" or "deny", not "${o.decision}"`);
  const sent = (e: SessionEvent) => e.type === 'user.tool_confirmation' && e.tool_use_id === o.toolUseId;
  return sendAndFollow(io, o.sessionId, o.wait, (c) => c.confirmTool(o.sessionId, o.toolUseId, o.decision === 'allow', o.message), sent);
}

export interface AnswerOptions {
  sessionId: string;
  toolUseId: string;
  /** The result the model reads. */
  content: string;
  /** The call failed: the model reads the content as an error. */
  error?: boolean;
  wait?: boolean;
}

/** `tandem answer`: the result of a custom tool call the session waits on. */
export function answerRun(io: Io, o: AnswerOptions): Promise<void> {
  const sent = (e: SessionEvent) => e.type === 'user.custom_tool_result' && e.custom_tool_use_id === o.toolUseId;
  return sendAndFollow(io, o.sessionId, o.wait, (c) => c.customToolResult(o.sessionId, o.toolUseId, o.content, o.error === true), sent);
}

export interface OutcomeOptions {
  sessionId: string;
  /** The rubric file (text or Markdown). */
  rubric: string;
  description?: string;
  /** Evaluations before the session stops asking for revisions, 1 to 20 (default 3). */
  maxIterations?: number;
  wait?: boolean;
}

const maxIterations = wholeNumber('--max-iterations', 1, 20);

/** `tandem outcome`: defines the outcome a session works towards; with `wait`, follows it and prints the verdict. */
export async function outcomeRun(io: Io, o: OutcomeOptions): Promise<void> {
  const max = maxIterations(o.maxIterations ?? 3);
  const rubric = await readFile(o.rubric, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`cannot read the rubric ${o.rubric}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  const client = await connect(io);
  const before = (await client.getEvents(o.sessionId)).at(-1)?.id;
  const description = o.description ?? `The work meets every criterion of the rubric (${basename(o.rubric)}).`;
  const outcomeId = await client.defineOutcome(o.sessionId, { description, rubric, max_iterations: max });
  io.err(`outcome ${outcomeId} defined for session ${o.sessionId}`);
  if (!o.wait) return;
  const sent = (e: SessionEvent) => e.type === 'user.define_outcome' && e.outcome_id === outcomeId;
  const idle = await printUntilIdle(io, client, o.sessionId, { after: before, sent });
  const outcome = (await client.getSession(o.sessionId)).outcome;
  if (outcome)
    io.err(
      forTerminal(`outcome ${outcome.outcome_id}: ${outcome.result}${outcome.explanation ? ` (${outcome.explanation})` : ''}`, {
        newlines: true,
        tabs: true,
      }),
    );
  throw new Exit(outcome?.result === 'satisfied' ? explainIdle(io, o.sessionId, idle) : 1);
}

/** Adds `run`, `send`, `interrupt`, `wake`, `confirm`, `answer` and `outcome` to the program. */
export function addTurnCommands(program: Command, io: Io): void {
  program
    .command('run')
    .description('start a session from an agent file and print its events until it goes idle')
    .argument('<agent-file>', 'agent definition (YAML or JSON)')
    .argument('<message>', 'the first user message')
    .option('--id <session-id>', 'session ID (default: sesn_ + random)')
    .option('--title <title>', 'title shown in the Temporal UI')
    .option('--json', 'print events as NDJSON')
    .option('--no-secret-check', "start even when this host's vault lacks a secret the agent names (workers elsewhere)")
    .action(action(io, (file: string, message: string, o: Omit<RunOptions, 'file' | 'message'>) => runRun(io, { file, message, ...o })));

  program
    .command('send')
    .description('send a user message to a session (a new turn, or steering while it works)')
    .argument('<session-id>')
    .argument('<message>')
    .option('--id <event-id>', 'client-chosen id; a retried send with the same id is applied once')
    .option('--wait', 'print events until the session goes idle again')
    .action(action(io, (sessionId: string, message: string, o: { id?: string; wait?: boolean }) => sendRun(io, { sessionId, message, ...o })));

  const signalVerb = (name: string, description: string, send: (c: TandemClient, id: string) => Promise<void>) =>
    program
      .command(name)
      .description(description)
      .argument('<session-id>')
      .action(action(io, async (sessionId: string) => send(await connect(io), sessionId)));
  signalVerb('interrupt', 'cancel what the session is doing; it goes idle', (c, id) => c.interrupt(id));
  signalVerb('wake', 'retry a session that stopped on an error (retries_exhausted)', (c, id) => c.wake(id));

  program
    .command('confirm')
    .description('allow or deny a tool call the session waits on (always_ask); it goes on at once')
    .argument('<session-id>')
    .argument('<tool-use-id>', 'the id named by "waits for you" (or the agent.tool_use event\'s tool_use_id)')
    .argument('<decision>', 'allow or deny')
    .option('--message <text>', 'with deny: what the model is told')
    .option('--wait', 'print events until the session goes idle again')
    .action(
      action(io, (sessionId: string, toolUseId: string, decision: string, o: { message?: string; wait?: boolean }) =>
        confirmRun(io, { sessionId, toolUseId, decision, ...o }),
      ),
    );

  program
    .command('answer')
    .description('give the result of a custom tool call the session waits on')
    .argument('<session-id>')
    .argument('<tool-use-id>', 'the id of the agent.custom_tool_use event')
    .argument('<content>', 'the result the model reads')
    .option('--error', 'the call failed: the model reads the content as an error')
    .option('--wait', 'print events until the session goes idle again')
    .action(
      action(io, (sessionId: string, toolUseId: string, content: string, o: { error?: boolean; wait?: boolean }) =>
        answerRun(io, { sessionId, toolUseId, content, ...o }),
      ),
    );

  program
    .command('outcome')
    .description('define the outcome a session works towards; a grader checks the work against the rubric')
    .argument('<session-id>')
    .requiredOption('--rubric <file>', 'the rubric (text or Markdown file) the grader checks the work against')
    .option('--description <text>', 'what the work should achieve (default: meet every criterion of the rubric)')
    .option('--max-iterations <n>', 'evaluations before the session stops asking for revisions (1-20)', maxIterations, 3)
    .option('--wait', 'print events until the session goes idle, then the verdict')
    .action(action(io, (sessionId: string, o: Omit<OutcomeOptions, 'sessionId'>) => outcomeRun(io, { sessionId, ...o })));
}
