/** `tandem start`, `tandem ls` and `tandem show`: sessions without following them. */
import type { Command } from 'commander';
import { loadAgentFile } from '../config/agent.js';
import type { SessionDescription } from '../client/index.js';
import { dollars, estimateCost, priceOf } from '../shared/pricing.js';
import { shorten } from './format.js';
import { forTerminal, jsonLine } from './terminal.js';
import { withSpinner } from './spinner.js';
import { action, connect, wholeNumber, type Io } from './io.js';

/** The Temporal UI's page of a session on the UI at `ui` (`TANDEM_UI_ADDRESS`; default the dev server's UI). */
export function uiLink(sessionId: string, namespace: string, ui = 'http://127.0.0.1:8233'): string {
  const base = /^https?:\/\//.test(ui) ? ui : `http://${ui}`;
  return `${base.replace(/\/+$/, '')}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(sessionId)}`;
}

/** What `tandem show --json` prints: the description plus the cost estimate and the UI link. */
export function showView(d: SessionDescription, namespace: string, ui?: string) {
  const usage = d.state?.usage ?? null;
  const cost = usage ? estimateCost(d.model, usage) : null;
  return {
    ...d,
    status: d.state?.status ?? d.status,
    stop_reason: d.state?.stop_reason ?? null,
    turn: d.state?.turn ?? null,
    usage,
    cost_usd: cost,
    price_basis: d.model ? (priceOf(d.model)?.prefix ?? null) : null,
    sandboxes: d.state?.sandboxes ?? null,
    pending: d.state?.pending ?? null,
    last_error: d.state?.last_error ?? null,
    ui_url: uiLink(d.id, namespace, ui),
  };
}

function printShow(io: Io, v: ReturnType<typeof showView>): void {
  // Titles, names, inputs and messages come from sessions and API clients: each is made one safe line.
  const t = (s: string | null | undefined, fallback = '?') => (s === null || s === undefined ? fallback : forTerminal(String(s)));
  const rows: Array<[string, string]> = [
    ['session', t(v.id)],
    ['title', t(v.title, '-')],
    ['agent', `${t(v.agent)} (model ${t(v.model)})`],
    [
      'status',
      `${t(v.status, 'unknown')}${v.stop_reason ? ` (${t(v.stop_reason.type)})` : ''}` +
        (v.workflow_status === 'RUNNING' ? '' : `; workflow ${v.workflow_status.toLowerCase()}`),
    ],
  ];
  if (v.state) {
    const u = v.usage!;
    rows.push(['turn', String(v.turn)]);
    rows.push([
      'usage',
      `${u.input_tokens} in / ${u.output_tokens} out tokens; cache ${u.cache_creation_input_tokens} written / ${u.cache_read_input_tokens} read`,
    ]);
    rows.push(['cost', v.cost_usd === null ? `no price known for model ${v.model ?? '?'}` : `~$${v.cost_usd.toFixed(4)} (${v.price_basis} list prices)`]);
    const files = v.state.files ?? [];
    if (files.length) rows.push(['files', files.map((f) => `${t(f.id)} ${t(f.file_id)} at ${t(f.mount_path)}`).join('\n            ')]);
    const budget = v.state.budget_micros;
    if (budget != null) {
      const spent = v.state.spend_micros ?? 0;
      rows.push(['budget', `${dollars(spent)} spent of ${dollars(budget)} (list cost with sub-agents and evaluations)`]);
    }
    rows.push(['sandboxes', v.sandboxes!.length ? v.sandboxes!.map((s) => `${t(s.name)} ${t(s.state)}`).join(', ') : 'none']);
    rows.push([
      'pending',
      v.pending!.length
        ? v.pending!.map((p) => `${t(p.tool_use_id)} ${t(p.name)} (${t(p.kind)}) ${shorten(JSON.stringify(p.input), 80)}`).join('\n            ')
        : 'none',
    ]);
    rows.push(['last error', v.last_error ? `${t(v.last_error.type)}: ${shorten(v.last_error.message, 160)}` : 'none']);
    const outcome = v.state.outcome;
    if (outcome)
      rows.push([
        'outcome',
        `${t(outcome.outcome_id)} ${t(outcome.result)} (evaluation ${outcome.iteration + 1} of ${outcome.max_iterations})` +
          (outcome.explanation ? `: ${shorten(outcome.explanation, 160)}` : ''),
      ]);
  } else {
    rows.push(['state', 'no worker answered the getSession query; start one with "tandem worker"']);
  }
  rows.push(['started', v.started_at]);
  if (v.closed_at) rows.push(['closed', v.closed_at]);
  rows.push(['history', `${v.history_length} events in the current run (${v.run_id})`]);
  rows.push(['ui', v.ui_url]);
  for (const [k, val] of rows) io.out(forTerminal(`${k.padEnd(12)}${val}`, { newlines: true }));
}

export interface StartOptions {
  /** The agent file (YAML or JSON). */
  file: string;
  /** The first user message (none: the session waits idle for one). */
  message?: string;
  id?: string;
  title?: string;
  /** Print {"id", "agent", "task_queue"} as JSON instead of the id. */
  json?: boolean;
}

/** `tandem start`: starts a session and prints its id, without following it. */
export async function startRun(io: Io, o: StartOptions): Promise<void> {
  const agent = await loadAgentFile(o.file);
  const client = await withSpinner('connecting to Temporal', () => connect(io));
  const id = await client.start({ agent, message: o.message, sessionId: o.id, title: o.title });
  if (o.json) io.out(JSON.stringify({ id, agent: agent.name, task_queue: client.taskQueue }));
  else io.out(id);
}

export interface LsOptions {
  status?: string;
  agent?: string;
  /** At most this many sessions (default 20). */
  limit?: number;
  json?: boolean;
}

const sessionLimit = wholeNumber('--limit', 1);

/** `tandem ls`: sessions newest first, filtered through Temporal visibility. */
export async function lsRun(io: Io, o: LsOptions): Promise<void> {
  const limit = sessionLimit(o.limit ?? 20);
  const client = await connect(io);
  const sessions = await withSpinner('listing sessions', () => client.listSessions({ status: o.status, agent: o.agent, limit }));
  if (o.json) return io.out(jsonLine(sessions));
  if (sessions.length === 0) {
    const filter = [o.status && `status ${o.status}`, o.agent && `agent ${o.agent}`].filter(Boolean).join(', ');
    io.err(`no sessions${filter ? ` with ${filter}` : ''} on ${client.address}`);
    return;
  }
  const idWidth = Math.max(...sessions.map((s) => s.id.length), 7);
  const agentWidth = Math.max(...sessions.map((s) => s.agent.length), 5);
  io.out(`${'SESSION'.padEnd(idWidth)}  ${'STATUS'.padEnd(12)}  ${'AGENT'.padEnd(agentWidth)}  STARTED`);
  for (const s of sessions)
    io.out(forTerminal(`${s.id.padEnd(idWidth)}  ${s.status.padEnd(12)}  ${s.agent.padEnd(agentWidth)}  ${s.started_at}`));
}

export interface ShowOptions {
  sessionId: string;
  json?: boolean;
}

/** `tandem show`: status, usage and cost, sandboxes, pending actions, last error and the UI link of a session. */
export async function showRun(io: Io, o: ShowOptions): Promise<void> {
  const client = await connect(io);
  const d = await withSpinner(`reading session ${o.sessionId}`, () => client.describeSession(o.sessionId));
  const view = showView(d, client.temporal.options.namespace, io.env.TANDEM_UI_ADDRESS);
  if (o.json) io.out(jsonLine(view));
  else printShow(io, view);
}

/** Adds `start`, `ls` and `show` to the program. */
export function addSessionCommands(program: Command, io: Io): void {
  program
    .command('start')
    .description('start a session from an agent file and print its id (follow it with tandem events --follow)')
    .argument('<agent-file>', 'agent definition (YAML or JSON)')
    .argument('[message]', 'the first user message (none: the session waits idle for one)')
    .option('--id <session-id>', 'session ID (default: sesn_ + random)')
    .option('--title <title>', 'title shown in the Temporal UI')
    .option('--json', 'print {"id", "agent", "task_queue"} as JSON')
    .action(
      action(io, (file: string, message: string | undefined, o: Omit<StartOptions, 'file' | 'message'>) =>
        startRun(io, { file, message, ...o }),
      ),
    );

  program
    .command('ls')
    .description('list sessions, newest first (Temporal visibility: TandemStatus, TandemAgent)')
    .option('--status <status>', 'only sessions with this status (idle, running, rescheduling, terminated)')
    .option('--agent <name>', 'only sessions of this agent')
    .option('--limit <n>', 'at most this many sessions', sessionLimit, 20)
    .option('--json', 'print a JSON array')
    .action(action(io, (o: LsOptions) => lsRun(io, o)));

  program
    .command('show')
    .description('status, stop reason, turn, usage and cost estimate, sandboxes, pending actions, last error, UI link')
    .argument('<session-id>')
    .option('--json', 'print one JSON object')
    .action(action(io, (sessionId: string, o: { json?: boolean }) => showRun(io, { sessionId, ...o })));
}
