/**
 * The `tandem` command. Each verb is a thin layer over the client library; errors are one sentence on stderr and a
 * non-zero exit.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { Command } from 'commander';
import { AgentFileError, loadAgentFile } from '../config/agent.js';
import { TandemClient } from '../client/index.js';
import { EVENT_TYPES, type SessionEventType } from '../log/events.js';
import { formatEvent } from './format.js';
import { forTerminal, jsonLine } from './terminal.js';
import { explainIdle, printTree, printUntilIdle, useColor } from './follow.js';
import { closeClients, connect, Exit, processIo, type Io } from './io.js';
import { addVaultCommands } from './vault.js';
import { defaultVaultPath, Vault } from '../vault/index.js';
import { loadRuntimeConfig } from '../config/env.js';
import { addSessionCommands } from './sessions.js';
import { addAgentCommands } from './agents.js';
import { codecFromEnv } from '../codec/index.js';
import { CODEC_MAX_BODY_BYTES, newCodecToken, startCodecServer } from './codec-server.js';

/** Ends a verb on an error: one sentence on stderr, exit 2 for a bad agent file, else 1. */
function failWith(io: Io, err: unknown): never {
  if (err instanceof Exit) throw err;
  const message = err instanceof AgentFileError ? err.message : ((err as Error)?.message ?? String(err));
  // Messages can quote what a server, a session or a file said: shown, never acted on by the terminal.
  io.err(`tandem: ${forTerminal(message, { newlines: true, tabs: true })}`);
  throw new Exit(err instanceof AgentFileError ? 2 : 1);
}

/** Sends something to a session; with `wait`, prints what follows until it goes idle and exits accordingly. */
async function sendAndFollow(io: Io, sessionId: string, wait: boolean | undefined, send: (c: TandemClient) => Promise<void>): Promise<void> {
  const client = await connect(io);
  const before = (await client.getEvents(sessionId)).at(-1)?.id; // also: one clear error for an unknown session
  await send(client);
  if (wait) throw new Exit(explainIdle(io, sessionId, await printUntilIdle(io, client, sessionId, { after: before })));
}

/**
 * Runs `tandem` with `argv` (the arguments after the command's name) on `io`, and returns the exit code. A verb
 * that serves (`dev`, `worker`, `serve`, …) returns when it stops.
 */
export async function runCli(argv: string[], io: Io = processIo): Promise<number> {
  try {
    await buildProgram(io).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof Exit) return err.code;
    io.err(`tandem: ${forTerminal((err as Error)?.message ?? String(err), { newlines: true, tabs: true })}`);
    return 1;
  } finally {
    await closeClients(io);
  }
}

/** Builds the command tree on `io` (exported for tests and docs). */
export function buildProgram(io: Io = processIo): Command {
  const fail = (err: unknown): never => failWith(io, err);
  const program = new Command('tandem')
    .description('Long-running Claude agents on Temporal: sessions, brains and disposable hands.')
    .showHelpAfterError()
    // What the parser refuses (an unknown verb or option, a missing argument) is a usage error: exit 2, after the
    // message and its suggestion. Help and --version exit 0.
    .exitOverride((err) => {
      throw new Exit(err.exitCode === 0 ? 0 : 2);
    })
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) })
    // Verbs that run a worker set up the Temporal Runtime: logs (the worker's own lifecycle lines are noise on a
    // terminal; TANDEM_LOG_LEVEL=INFO or DEBUG brings them back) and metrics on TANDEM_METRICS_ADDRESS. The other
    // verbs are plain clients and need no Runtime, nor the worker code (loaded by the verbs that use it).
    .hook('preAction', async (_program, action) => {
      if (!['worker', 'hands', 'dev', 'demo'].includes(action.name())) return;
      try {
        const { installRuntime } = await import('../telemetry.js');
        installRuntime({ defaultLevel: 'WARN', metrics: true });
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('dev')
    .description('start (or reuse) the Temporal dev server with a SQLite file, and a worker (with --serve, the HTTP API too)')
    .option('--db <file>', 'SQLite file of the dev server (default .tandem/data/temporal.db)')
    .option('--ui-port <port>', 'port of the Temporal UI', '8233')
    .option('--serve [host:port]', 'also serve the Managed Agents HTTP API (default TANDEM_API_ADDRESS, 127.0.0.1:8787)')
    .action(async (o: { db?: string; uiPort: string; serve?: boolean | string }) =>
      (await import('./dev.js')).runDev({ dbFile: o.db, uiPort: Number(o.uiPort), serve: o.serve }).catch(fail),
    );

  program
    .command('serve')
    .description(
      'serve the Managed Agents HTTP API (agents, environments, sessions, events, vaults) for the official SDK; ' +
        'keys from TANDEM_API_KEYS, else one kept in the vault; needs a worker (tandem dev or tandem worker)',
    )
    .option('--listen <host:port>', 'address to listen on (default TANDEM_API_ADDRESS, 127.0.0.1:8787)')
    .action(async (o: { listen?: string }) => (await import('./serve.js')).runServe(loadRuntimeConfig(), o.listen).catch(fail));

  program
    .command('worker')
    .description('run a worker on the task queue (TEMPORAL_ADDRESS, TANDEM_TASK_QUEUE): the brain and, on a Docker host, the hands')
    .option('--role <role>', 'all (default, TANDEM_WORKER_ROLE), brain (no Docker needed) or hands')
    .action(async (o: { role?: string }) => {
      if (o.role !== undefined && !['all', 'brain', 'hands'].includes(o.role))
        return fail(new Error(`--role must be all, brain or hands, not ${JSON.stringify(o.role)}`));
      return (await import('./dev.js')).runWorker(o.role ? { role: o.role as 'all' | 'brain' | 'hands' } : {}).catch(fail);
    });

  program
    .command('hands')
    .description(
      'run a hands host on this Docker host: its sandboxes, their gateway and snapshots, on a task queue of its own ' +
        '(TANDEM_HANDS_ID, default the hostname); brains place sandboxes on it',
    )
    .action(async () => (await import('./dev.js')).runWorker({ role: 'hands' }).catch(fail));

  program
    .command('codec-server')
    .description(
      'serve /encode and /decode with the TANDEM_PAYLOAD_KEY codec, for the Temporal UI (--ui-codec-endpoint) and CLI; ' +
        'callers need the token (TANDEM_CODEC_TOKEN, else one made at start and printed once)',
    )
    .option('--port <port>', 'port on 127.0.0.1', '8888')
    .option('--origin <url...>', 'web origins of the Temporal UI allowed to call it (default TANDEM_UI_ADDRESS, else http://127.0.0.1:8233 and http://localhost:8233)')
    .action(async (o: { port: string; origin?: string[] }) => {
      try {
        const codec = codecFromEnv();
        if (!codec) throw new Error('TANDEM_PAYLOAD_KEY is not set, so there is nothing to decode; set it to the key the workers use');
        const configured = loadRuntimeConfig(io.env).TANDEM_CODEC_TOKEN;
        const token = configured ?? newCodecToken();
        const ui = io.env.TANDEM_UI_ADDRESS;
        const origins = o.origin ?? (ui ? [ui] : ['http://127.0.0.1:8233', 'http://localhost:8233']);
        await startCodecServer(codec, Number(o.port), { origins, token });
        const base = `http://127.0.0.1:${o.port}`;
        const shown = configured ? '$TANDEM_CODEC_TOKEN' : token;
        io.out(
          [
            `tandem codec-server: ${base} (POST /encode, /decode; ${CODEC_MAX_BODY_BYTES / 1024 / 1024} MiB at most a request)`,
            configured
              ? 'token: the one in TANDEM_CODEC_TOKEN'
              : `token (shown this once; set TANDEM_CODEC_TOKEN to choose your own): ${token}`,
            `  Temporal UI codec endpoint: ${base}/${shown}   (e.g. temporal server start-dev --ui-codec-endpoint ${base}/${shown})`,
            `  temporal CLI: --codec-endpoint ${base} --codec-auth "Bearer ${shown}"`,
          ].join('\n'),
        );
      } catch (err) {
        fail(err);
      }
      await new Promise<never>(() => {}); // serves until the process is stopped
    });

  program
    .command('demo')
    .description('run the example coding agent on a real task in a real container (offline script without ANTHROPIC_API_KEY)')
    .action(async () => {
      throw new Exit(await (await import('./dev.js')).runDemo().catch(fail));
    });

  program
    .command('run')
    .description('start a session from an agent file and print its events until it goes idle')
    .argument('<agent-file>', 'agent definition (YAML or JSON)')
    .argument('<message>', 'the first user message')
    .option('--id <session-id>', 'session ID (default: sesn_ + random)')
    .option('--title <title>', 'title shown in the Temporal UI')
    .option('--json', 'print events as NDJSON')
    .option('--no-secret-check', "start even when this host's vault lacks a secret the agent names (workers elsewhere)")
    .action(async (file: string, message: string, o: { id?: string; title?: string; json?: boolean; secretCheck: boolean }) => {
      try {
        const agent = await loadAgentFile(file);
        const vault = o.secretCheck ? new Vault(defaultVaultPath(io.env), io.env) : undefined;
        const client = await connect(io);
        const sessionId = await client.start({ agent, message, sessionId: o.id, title: o.title, vault });
        if (!o.json) io.err(`session ${sessionId} started (agent ${forTerminal(agent.name)})`);
        const idle = await printUntilIdle(io, client, sessionId, { json: o.json });
        throw new Exit(explainIdle(io, sessionId, idle));
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('send')
    .description('send a user message to a session (a new turn, or steering while it works)')
    .argument('<session-id>')
    .argument('<message>')
    .option('--id <event-id>', 'client-chosen id; a retried send with the same id is applied once')
    .option('--wait', 'print events until the session goes idle again')
    .action(async (sessionId: string, message: string, o: { id?: string; wait?: boolean }) => {
      try {
        await sendAndFollow(io, sessionId, o.wait, (c) => c.sendMessage(sessionId, message, o.id));
      } catch (err) {
        fail(err);
      }
    });

  const signalVerb = (name: string, description: string, send: (c: TandemClient, id: string) => Promise<void>) =>
    program
      .command(name)
      .description(description)
      .argument('<session-id>')
      .action(async (sessionId: string) => {
        try {
          await send(await connect(io), sessionId);
        } catch (err) {
          fail(err);
        }
      });
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
    .action(async (sessionId: string, toolUseId: string, decision: string, o: { message?: string; wait?: boolean }) => {
      try {
        if (decision !== 'allow' && decision !== 'deny') throw new Error(`the decision is "allow" or "deny", not "${decision}"`);
        await sendAndFollow(io, sessionId, o.wait, (c) => c.confirmTool(sessionId, toolUseId, decision === 'allow', o.message));
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('answer')
    .description('give the result of a custom tool call the session waits on')
    .argument('<session-id>')
    .argument('<tool-use-id>', 'the id of the agent.custom_tool_use event')
    .argument('<content>', 'the result the model reads')
    .option('--error', 'the call failed: the model reads the content as an error')
    .option('--wait', 'print events until the session goes idle again')
    .action(async (sessionId: string, toolUseId: string, content: string, o: { error?: boolean; wait?: boolean }) => {
      try {
        await sendAndFollow(io, sessionId, o.wait, (c) => c.customToolResult(sessionId, toolUseId, content, o.error === true));
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('events')
    .description('print the session log (every run of it), one line an event')
    .argument('<session-id>')
    .option('--after <id>', 'only events after this event id or position')
    .option('--limit <n>', 'at most this many events')
    .option('--type <type...>', 'only events of these types (e.g. agent.tool_use agent.tool_result)')
    .option('--run <run-id>', 'read the branch ending at this run (an old branch after a rewind)')
    .option('--follow', 'keep printing new events as they are written')
    .option('--tree', 'also print the logs of the sub-agent sessions it delegated to, indented under their call')
    .option('--json', 'NDJSON output')
    .action(
      async (
        sessionId: string,
        o: { after?: string; limit?: string; type?: string[]; run?: string; follow?: boolean; tree?: boolean; json?: boolean },
      ) => {
        try {
          const types = o.type as SessionEventType[] | undefined;
          const unknown = types?.filter((t) => !(EVENT_TYPES as readonly string[]).includes(t));
          if (unknown?.length) throw new Error(`unknown event type ${unknown.join(', ')}; known: ${EVENT_TYPES.join(', ')}`);
          const limit = o.limit === undefined ? undefined : Number(o.limit);
          if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) throw new Error('--limit takes a whole number');
          const client = await connect(io);
          const color = !o.json && useColor(io);
          if (o.tree) {
            if (o.follow) throw new Error('--tree reads finished logs; it cannot be combined with --follow');
            return await printTree(io, client, sessionId, { types, json: o.json, color });
          }
          let printed = 0;
          const events = o.follow
            ? client.followEvents(sessionId, { after: o.after })
            : await client.getEvents(sessionId, { after: o.after, runId: o.run });
          for await (const e of events) {
            if (types && !types.includes(e.type)) continue;
            if (limit !== undefined && printed >= limit) break;
            io.out(o.json ? jsonLine(e) : formatEvent(e, color));
            printed++;
          }
        } catch (err) {
          fail(err);
        }
      },
    );

  program
    .command('rewind')
    .description('go back to just before an event; the session continues from there, the old branch stays readable')
    .argument('<session-id>')
    .requiredOption('--to <event-id>', 'the first event to undo (an id from tandem events)')
    .option('--reason <text>', 'why (recorded with the reset)', 'tandem rewind')
    .action(async (sessionId: string, o: { to: string; reason: string }) => {
      try {
        const client = await connect(io);
        const { runId, previousRunId } = await client.rewind(sessionId, o.to, o.reason);
        io.out(`session ${sessionId} rewound to before event ${o.to}`);
        io.out(`new run ${runId}; the old branch: tandem events ${sessionId} --run ${previousRunId}`);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('fork')
    .description('start a new session from another one at an event: its log up to there, its files as they were then')
    .argument('<session-id>')
    .requiredOption('--at <event-id>', 'the last event the fork keeps (an id from tandem events); at a user message, the fork answers it')
    .option('--id <session-id>', 'the new session id (default: a new sesn_ id)')
    .option('--agent <file>', 'run the fork with this agent file instead of the original agent')
    .option('--wait', 'print the fork\'s events until it is idle')
    .action(async (sessionId: string, o: { at: string; id?: string; agent?: string; wait?: boolean }) => {
      try {
        const agent = o.agent ? await loadAgentFile(o.agent) : undefined;
        const client = await connect(io);
        const forkId = await client.fork(sessionId, { at: o.at, ...(o.id ? { id: o.id } : {}), ...(agent ? { agent } : {}) });
        io.out(`session ${forkId} forked from ${sessionId} at event ${o.at}`);
        if (o.wait) await printUntilIdle(io, client, forkId);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('replay')
    .description('replay recorded sessions against an agent and compare them turn by turn (a regression eval)')
    .argument('[session-ids...]')
    .requiredOption('--agent <file>', 'the agent file to replay with')
    .option('--from <event-id>', 'replay from this event on (one session only); the log before it is kept')
    .option('--live', 'run every tool call in a sandbox (default: hermetic, recorded results while the calls match)')
    .option('--query <visibility-query>', 'replay the sessions this Temporal visibility query finds')
    .option('--concurrency <n>', 'replays at once', '4')
    .option('--json', 'the reports as JSON')
    .action(async (ids: string[], o: { agent: string; from?: string; live?: boolean; query?: string; concurrency: string; json?: boolean }) => {
      try {
        const agent = await loadAgentFile(o.agent);
        const client = await connect(io);
        const sessions = [...ids, ...(o.query ? await client.findSessions(o.query) : [])];
        if (sessions.length === 0) throw new Error('name sessions to replay, or a --query that finds some');
        if (o.from !== undefined && sessions.length > 1) throw new Error('--from names an event of one session: replay one session with it');
        const n = Number(o.concurrency);
        if (!Number.isInteger(n) || n < 1) throw new Error(`--concurrency must be a positive integer, not ${JSON.stringify(o.concurrency)}`);
        const reports = await (await import('./replay.js')).runReplays(client, sessions, {
          agent,
          mode: o.live ? 'live' : 'hermetic',
          concurrency: n,
          ...(o.from !== undefined ? { from: o.from } : {}),
        });
        if (o.json) io.out(jsonLine(reports));
        else for (const r of reports) io.out((await import('./replay.js')).formatReport(r));
      } catch (err) {
        fail(err);
      }
    });

  program
    .command('outcome')
    .description('define the outcome a session works towards; a grader checks the work against the rubric')
    .argument('<session-id>')
    .requiredOption('--rubric <file>', 'the rubric (text or Markdown file) the grader checks the work against')
    .option('--description <text>', 'what the work should achieve (default: meet every criterion of the rubric)')
    .option('--max-iterations <n>', 'evaluations before the session stops asking for revisions (1-20)', '3')
    .option('--wait', 'print events until the session goes idle, then the verdict')
    .action(async (sessionId: string, o: { rubric: string; description?: string; maxIterations: string; wait?: boolean }) => {
      try {
        const max = Number(o.maxIterations);
        if (!Number.isInteger(max) || max < 1 || max > 20) throw new Error('--max-iterations takes a whole number from 1 to 20');
        const rubric = await readFile(o.rubric, 'utf8').catch((err: NodeJS.ErrnoException) => {
          throw new Error(`cannot read the rubric ${o.rubric}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
        });
        const client = await connect(io);
        const before = (await client.getEvents(sessionId)).at(-1)?.id;
        const description = o.description ?? `The work meets every criterion of the rubric (${basename(o.rubric)}).`;
        const outcomeId = await client.defineOutcome(sessionId, { description, rubric, max_iterations: max });
        io.err(`outcome ${outcomeId} defined for session ${sessionId}`);
        if (!o.wait) return;
        const idle = await printUntilIdle(io, client, sessionId, { after: before });
        const outcome = (await client.getSession(sessionId)).outcome;
        if (outcome)
          io.err(
            forTerminal(`outcome ${outcome.outcome_id}: ${outcome.result}${outcome.explanation ? ` (${outcome.explanation})` : ''}`, {
              newlines: true,
              tabs: true,
            }),
          );
        throw new Exit(outcome?.result === 'satisfied' ? explainIdle(io, sessionId, idle) : 1);
      } catch (err) {
        fail(err);
      }
    });

  addSessionCommands(program, io, fail);
  addAgentCommands(program, io, fail);
  addVaultCommands(program, io, fail);
  return program;
}
