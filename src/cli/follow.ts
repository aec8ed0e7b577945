/** Following a session from the terminal: live event lines until it goes idle. */
import type { TandemClient } from '../client/index.js';
import type { SessionEvent } from '../log/events.js';
import { formatEvent } from './format.js';
import type { Io } from './io.js';
import { forTerminal, jsonLine } from './terminal.js';

/**
 * Prints events as they are written until the session goes idle; returns the idle event. With `sent`, only an idle
 * after the event it matches counts: what was sent may reach a session that has not yet written the idle event it
 * was about to write, and that idle is not the answer.
 */
export async function printUntilIdle(
  io: Io,
  client: TandemClient,
  sessionId: string,
  opts: { json?: boolean; after?: string; sent?: (e: SessionEvent) => boolean } = {},
): Promise<SessionEvent | undefined> {
  const color = !opts.json && useColor(io);
  let arrived = opts.sent === undefined;
  for await (const e of client.followEvents(sessionId, { after: opts.after })) {
    io.out(opts.json ? jsonLine(e) : formatEvent(e, color));
    arrived ||= opts.sent!(e);
    if (e.type === 'session.status_terminated' || (arrived && e.type === 'session.status_idle')) return e;
  }
  return undefined;
}

/** Whether event lines get colours: on a terminal, unless NO_COLOR is set. */
export function useColor(io: Io): boolean {
  return io.isTTY && !io.env.NO_COLOR;
}

/** Explains what an idle session waits for and gives the exit code of `tandem run`. */
export function explainIdle(io: Io, sessionId: string, idle: SessionEvent | undefined): number {
  const stop = idle?.type === 'session.status_idle' ? idle.stop_reason : null;
  const reason = stop?.type;
  if (stop?.type === 'requires_action') {
    const ids = stop.event_ids.map((id) => forTerminal(String(id)));
    io.err(
      `session ${sessionId} waits for you on ${ids.join(', ')}: tandem confirm ${sessionId} <id> allow|deny ` +
        `(a tool to confirm) or tandem answer ${sessionId} <id> "<result>" (a custom tool)`,
    );
    return 0;
  }
  if (reason === 'retries_exhausted') {
    io.err(`session ${sessionId} stopped on an error; fix the cause, then: tandem wake ${sessionId}`);
    return 1;
  }
  if (reason === 'budget_reached') io.err(`session ${sessionId} reached a budget (calls in a turn, output tokens or cost); its last error says which`);
  return 0;
}


/**
 * Prints a session's log and, under each `session.thread_created`, the log of that child session, indented (and
 * so on down the tree). With `json`, each line carries `session_id` and `depth`.
 */
export async function printTree(
  io: Io,
  client: TandemClient,
  sessionId: string,
  opts: { types?: string[]; json?: boolean; color?: boolean },
  depth = 0,
): Promise<void> {
  const indent = '    '.repeat(depth);
  for await (const e of await client.getEvents(sessionId)) {
    if (!opts.types || opts.types.includes(e.type)) {
      io.out(opts.json ? jsonLine({ session_id: sessionId, depth, ...e }) : indent + formatEvent(e, opts.color));
    }
    if (e.type === 'session.thread_created') await printTree(io, client, e.session_thread_id, opts, depth + 1);
  }
}
