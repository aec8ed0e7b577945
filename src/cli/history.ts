/**
 * The verbs that read a session's log or branch it: `events`, `rewind`, `fork` and `replay`. Each is an options
 * object and a run function; `addHistoryCommands` wires them to the parser.
 */
import type { Command } from 'commander';
import { loadAgentFile } from '../config/agent.js';
import { EVENT_TYPES, type SessionEventType } from '../log/events.js';
import { formatEvent } from './format.js';
import { printTree, printUntilIdle, useColor } from './follow.js';
import { action, connect, wholeNumber, type Io } from './io.js';
import { formatReport, runReplays } from './replay.js';
import { jsonLine } from './terminal.js';

export interface EventsOptions {
  sessionId: string;
  /** Only events after this event id or position. */
  after?: string;
  limit?: number;
  /** Only events of these types. */
  type?: string[];
  /** Read the branch ending at this run (an old branch after a rewind). */
  run?: string;
  follow?: boolean;
  /** Also the logs of the sub-agent sessions it delegated to. */
  tree?: boolean;
  json?: boolean;
}

const eventLimit = wholeNumber('--limit', 0);
const concurrency = wholeNumber('--concurrency', 1);

/** `tandem events`: the session log, sliced, one line an event (NDJSON with `json`). */
export async function eventsRun(io: Io, o: EventsOptions): Promise<void> {
  const unknown = o.type?.filter((t) => !(EVENT_TYPES as readonly string[]).includes(t));
  if (unknown?.length) throw new Error(`unknown event type ${unknown.join(', ')}; known: ${EVENT_TYPES.join(', ')}`);
  const types = o.type as SessionEventType[] | undefined;
  const limit = o.limit === undefined ? undefined : eventLimit(o.limit);
  if (o.tree && o.follow) throw new Error('--tree reads finished logs; it cannot be combined with --follow');
  const client = await connect(io);
  const color = !o.json && useColor(io);
  if (o.tree) return printTree(io, client, o.sessionId, { types, json: o.json, color });
  let printed = 0;
  const events = o.follow
    ? client.followEvents(o.sessionId, { after: o.after })
    : await client.getEvents(o.sessionId, { after: o.after, runId: o.run });
  for await (const e of events) {
    if (types && !types.includes(e.type)) continue;
    if (limit !== undefined && printed >= limit) break;
    io.out(o.json ? jsonLine(e) : formatEvent(e, color));
    printed++;
  }
}

export interface RewindOptions {
  sessionId: string;
  /** The first event to undo. */
  to: string;
  /** Why, recorded with the reset (default "tandem rewind"). */
  reason?: string;
}

/** `tandem rewind`: goes back to just before an event; the old branch stays readable. */
export async function rewindRun(io: Io, o: RewindOptions): Promise<void> {
  const client = await connect(io);
  const { runId, previousRunId } = await client.rewind(o.sessionId, o.to, o.reason ?? 'tandem rewind');
  io.out(`session ${o.sessionId} rewound to before event ${o.to}`);
  io.out(`new run ${runId}; the old branch: tandem events ${o.sessionId} --run ${previousRunId}`);
}

export interface ForkOptions {
  sessionId: string;
  /** The last event the fork keeps. */
  at: string;
  /** The new session's id (default a new sesn_ id). */
  id?: string;
  /** An agent file to run the fork with instead of the original agent. */
  agent?: string;
  wait?: boolean;
}

/** `tandem fork`: a new session from another one's log up to an event, with its files as they were then. */
export async function forkRun(io: Io, o: ForkOptions): Promise<void> {
  const agent = o.agent ? await loadAgentFile(o.agent) : undefined;
  const client = await connect(io);
  const forkId = await client.fork(o.sessionId, { at: o.at, ...(o.id ? { id: o.id } : {}), ...(agent ? { agent } : {}) });
  io.out(`session ${forkId} forked from ${o.sessionId} at event ${o.at}`);
  if (o.wait) await printUntilIdle(io, client, forkId);
}

export interface ReplayOptions {
  sessionIds: string[];
  /** The agent file to replay with. */
  agent: string;
  /** Replay from this event on (one session only). */
  from?: string;
  /** Run every tool call in a sandbox (default hermetic: recorded results while the calls match). */
  live?: boolean;
  /** Also the sessions this Temporal visibility query finds. */
  query?: string;
  /** Replays at once (default 4). */
  concurrency?: number;
  json?: boolean;
}

/** `tandem replay`: replays recorded sessions against an agent and prints their comparison. */
export async function replayRun(io: Io, o: ReplayOptions): Promise<void> {
  const n = concurrency(o.concurrency ?? 4);
  const agent = await loadAgentFile(o.agent);
  const client = await connect(io);
  const sessions = [...o.sessionIds, ...(o.query ? await client.findSessions(o.query) : [])];
  if (sessions.length === 0) throw new Error('name sessions to replay, or a --query that finds some');
  if (o.from !== undefined && sessions.length > 1) throw new Error('--from names an event of one session: replay one session with it');
  const reports = await runReplays(client, sessions, {
    agent,
    mode: o.live ? 'live' : 'hermetic',
    concurrency: n,
    ...(o.from !== undefined ? { from: o.from } : {}),
  });
  if (o.json) io.out(jsonLine(reports));
  else for (const r of reports) io.out(formatReport(r));
}

/** Adds `events`, `rewind`, `fork` and `replay` to the program. */
export function addHistoryCommands(program: Command, io: Io): void {
  program
    .command('events')
    .description('print the session log (every run of it), one line an event')
    .argument('<session-id>')
    .option('--after <id>', 'only events after this event id or position')
    .option('--limit <n>', 'at most this many events', eventLimit)
    .option('--type <type...>', 'only events of these types (e.g. agent.tool_use agent.tool_result)')
    .option('--run <run-id>', 'read the branch ending at this run (an old branch after a rewind)')
    .option('--follow', 'keep printing new events as they are written')
    .option('--tree', 'also print the logs of the sub-agent sessions it delegated to, indented under their call')
    .option('--json', 'NDJSON output')
    .action(
      action(io, (sessionId: string, o: Omit<EventsOptions, 'sessionId'>) => eventsRun(io, { sessionId, ...o })),
    );

  program
    .command('rewind')
    .description('go back to just before an event; the session continues from there, the old branch stays readable')
    .argument('<session-id>')
    .requiredOption('--to <event-id>', 'the first event to undo (an id from tandem events)')
    .option('--reason <text>', 'why (recorded with the reset)', 'tandem rewind')
    .action(action(io, (sessionId: string, o: { to: string; reason: string }) => rewindRun(io, { sessionId, ...o })));

  program
    .command('fork')
    .description('start a new session from another one at an event: its log up to there, its files as they were then')
    .argument('<session-id>')
    .requiredOption('--at <event-id>', 'the last event the fork keeps (an id from tandem events); at a user message, the fork answers it')
    .option('--id <session-id>', 'the new session id (default: a new sesn_ id)')
    .option('--agent <file>', 'run the fork with this agent file instead of the original agent')
    .option('--wait', "print the fork's events until it is idle")
    .action(action(io, (sessionId: string, o: Omit<ForkOptions, 'sessionId'>) => forkRun(io, { sessionId, ...o })));

  program
    .command('replay')
    .description('replay recorded sessions against an agent and compare them turn by turn (a regression eval)')
    .argument('[session-ids...]')
    .requiredOption('--agent <file>', 'the agent file to replay with')
    .option('--from <event-id>', 'replay from this event on (one session only); the log before it is kept')
    .option('--live', 'run every tool call in a sandbox (default: hermetic, recorded results while the calls match)')
    .option('--query <visibility-query>', 'replay the sessions this Temporal visibility query finds')
    .option('--concurrency <n>', 'replays at once', concurrency, 4)
    .option('--json', 'the reports as JSON')
    .action(
      action(io, (sessionIds: string[], o: Omit<ReplayOptions, 'sessionIds'>) => replayRun(io, { sessionIds, ...o })),
    );
}
