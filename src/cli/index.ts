/**
 * The `tandem` command. Each verb is an options object and a run function over the client library (`sendRun(io,
 * options)`), wired to the parser next to it; errors are one sentence on stderr and a non-zero exit.
 */
import { Command } from 'commander';
import { loadRuntimeConfig } from '../config/env.js';
import { addAgentCommands } from './agents.js';
import { codecServerRun } from './codec-server.js';
import { addFileCommands } from './files.js';
import { addHistoryCommands } from './history.js';
import { action, closeClients, Exit, failWith, processIo, wholeNumber, type Io } from './io.js';
import { addSessionCommands } from './sessions.js';
import { forTerminal } from './terminal.js';
import { addTurnCommands } from './turns.js';
import { addVaultCommands } from './vault.js';

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

const port = (flag: string) => wholeNumber(flag, 1, 65535);

/** Builds the command tree on `io` (exported for tests and docs). */
export function buildProgram(io: Io = processIo): Command {
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
        failWith(io, err);
      }
    });

  program
    .command('dev')
    .description('start (or reuse) the Temporal dev server with a SQLite file, and a worker (with --serve, the HTTP API too)')
    .option('--db <file>', 'SQLite file of the dev server (default .tandem/data/temporal.db)')
    .option('--ui-port <port>', 'port of the Temporal UI', port('--ui-port'), 8233)
    .option('--serve [host:port]', 'also serve the Managed Agents HTTP API (default TANDEM_API_ADDRESS, 127.0.0.1:8787)')
    .action(
      action(io, async (o: { db?: string; uiPort: number; serve?: boolean | string }) =>
        (await import('./dev.js')).runDev({ dbFile: o.db, uiPort: o.uiPort, serve: o.serve }),
      ),
    );

  program
    .command('serve')
    .description(
      'serve the Managed Agents HTTP API (agents, environments, sessions, events, vaults) for the official SDK; ' +
        'keys from TANDEM_API_KEYS, else one kept in the vault; needs a worker (tandem dev or tandem worker)',
    )
    .option('--listen <host:port>', 'address to listen on (default TANDEM_API_ADDRESS, 127.0.0.1:8787)')
    .action(action(io, async (o: { listen?: string }) => (await import('./serve.js')).runServe(loadRuntimeConfig(io.env), o.listen)));

  program
    .command('worker')
    .description('run a worker on the task queue (TEMPORAL_ADDRESS, TANDEM_TASK_QUEUE): the brain and, on a Docker host, the hands')
    .option('--role <role>', 'all (default, TANDEM_WORKER_ROLE), brain (no Docker needed) or hands')
    .action(
      action(io, async (o: { role?: string }) => {
        if (o.role !== undefined && !['all', 'brain', 'hands'].includes(o.role))
          throw new Error(`--role must be all, brain or hands, not ${JSON.stringify(o.role)}`);
        return (await import('./dev.js')).runWorker(o.role ? { role: o.role as 'all' | 'brain' | 'hands' } : {});
      }),
    );

  program
    .command('hands')
    .description(
      'run a hands host on this Docker host: its sandboxes, their gateway and snapshots, on a task queue of its own ' +
        '(TANDEM_HANDS_ID, default the hostname); brains place sandboxes on it',
    )
    .action(action(io, async () => (await import('./dev.js')).runWorker({ role: 'hands' })));

  program
    .command('codec-server')
    .description(
      'serve /encode and /decode with the TANDEM_PAYLOAD_KEY codec, for the Temporal UI (--ui-codec-endpoint) and CLI; ' +
        'callers need the token (TANDEM_CODEC_TOKEN, else one made at start and printed once)',
    )
    .option('--port <port>', 'port on 127.0.0.1', port('--port'), 8888)
    .option('--origin <url...>', 'web origins of the Temporal UI allowed to call it (default TANDEM_UI_ADDRESS, else http://127.0.0.1:8233 and http://localhost:8233)')
    .action(action(io, (o: { port: number; origin?: string[] }) => codecServerRun(io, o)));

  program
    .command('demo')
    .description('run the example coding agent on a real task in a real container (offline script without ANTHROPIC_API_KEY)')
    .action(
      action(io, async () => {
        throw new Exit(await (await import('./dev.js')).runDemo());
      }),
    );

  addTurnCommands(program, io);
  addHistoryCommands(program, io);
  addSessionCommands(program, io);
  addAgentCommands(program, io);
  addVaultCommands(program, io);
  addFileCommands(program, io);
  return program;
}
