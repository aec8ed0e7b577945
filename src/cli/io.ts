/**
 * Where the `tandem` verbs write and how they end. `bin/tandem` runs them on the process's streams and exits with
 * their code; a test runs them in its own process with `runCli(argv, io)` and reads what they wrote.
 */
import { TandemClient } from '../client/index.js';
import { AgentFileError } from '../config/agent.js';
import { TandemError } from '../shared/errors.js';
import { forTerminal } from './terminal.js';

export interface Io {
  /** Writes a line to standard output (the data a verb answers with). */
  out(line: string): void;
  /** Writes a line to standard error (progress, notes and errors for the person at the terminal). */
  err(line: string): void;
  /** Whether standard output is a terminal (colours). */
  readonly isTTY: boolean;
  /** The environment the verbs read their settings from. */
  readonly env: NodeJS.ProcessEnv;
  /** Standard input (a secret's value for `tandem vault set`). */
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

/** The process's own streams and environment. */
export const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  get isTTY() {
    return process.stdout.isTTY === true;
  },
  get env() {
    return process.env;
  },
  get stdin() {
    return process.stdin;
  },
};

/** Ends a verb with an exit code (0 success, 1 failure, 2 usage error or bad agent file). */
export class Exit extends TandemError {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** Ends a verb on an error: one sentence on stderr, exit 2 for a bad agent file, else 1. */
export function failWith(io: Io, err: unknown): never {
  if (err instanceof Exit) throw err;
  // Messages can quote what a server, a session or a file said: shown, never acted on by the terminal.
  io.err(`tandem: ${forTerminal((err as Error)?.message ?? String(err), { newlines: true, tabs: true })}`);
  throw new Exit(err instanceof AgentFileError ? 2 : 1);
}

/**
 * The commander action of a verb: calls its run function with what the parser read, and ends on an error with
 * `failWith`. Each verb is an options object and a run function (`sendRun(io, options)`), which a program or a test
 * can also call directly.
 */
export function action<A extends unknown[]>(io: Io, run: (...args: A) => unknown): (...args: A) => Promise<void> {
  return async (...args) => {
    try {
      await run(...args);
    } catch (err) {
      failWith(io, err);
    }
  };
}

/**
 * Reads a whole-number option (`--limit`, `--concurrency`, …) within bounds; anything else is an error that names
 * the option and what it got. A parser for the command line, and the check a run function makes of its options.
 */
export function wholeNumber(flag: string, min: number, max = Infinity): (value: string | number) => number {
  return (value) => {
    const n = typeof value === 'number' ? value : value.trim() === '' ? NaN : Number(value);
    if (Number.isInteger(n) && n >= min && n <= max) return n;
    const range = max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`;
    throw new Error(`${flag} takes a whole number ${range} (got ${JSON.stringify(String(value))})`);
  };
}

const clients = new WeakMap<Io, TandemClient[]>();

/** A client of the Temporal server and task queue the verbs' environment names; `closeClients` closes it. */
export async function connect(io: Io): Promise<TandemClient> {
  const { TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace, TANDEM_TASK_QUEUE: taskQueue } = io.env;
  const client = await TandemClient.connect({ address, namespace, taskQueue, env: io.env });
  clients.set(io, [...(clients.get(io) ?? []), client]);
  return client;
}

/** Closes the connections the verbs opened on `io` (a verb run in a test's process leaves none open). */
export async function closeClients(io: Io): Promise<void> {
  const open = clients.get(io) ?? [];
  clients.delete(io);
  await Promise.all(open.map((c) => c.temporal.connection.close().catch(() => undefined)));
}
