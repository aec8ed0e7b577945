/**
 * Reads a session's log: the workflow histories of every run of its continue-as-new chain, decoded into session
 * events with positions that keep their order across runs. The activity layer uses it to build the model's
 * context; clients use it to show, slice and follow the log.
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { decodeHistoryInPlace } from '../codec/index.js';
import { LogDecoder, type PayloadDecoder } from './decode.js';
import type { SessionEvent } from './events.js';
import type { SessionInput } from '../shared/types.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** Plain JSON decoding of payloads with the default converter. */
export const decodeJsonPayload: PayloadDecoder = (p) =>
  defaultPayloadConverter.fromPayload(p as Parameters<typeof defaultPayloadConverter.fromPayload>[0]);

/**
 * Reads the history events of one run (the latest run when `runId` is unset), with their payloads decoded by the
 * client's payload codecs (encrypted history), so the log decoder sees plain JSON.
 */
export async function readHistory(client: Client, workflowId: string, runId?: string): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const res = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId, runId },
      nextPageToken,
      maximumPageSize: 1000,
    });
    events.push(...(res.history?.events ?? []));
    nextPageToken = res.nextPageToken?.length ? res.nextPageToken : undefined;
  } while (nextPageToken);
  return decodeHistoryInPlace(events, client.options.loadedDataConverter.payloadCodecs);
}

/** Closed runs never change: their histories are kept (a bounded number, least recently used first out). */
const closedRuns = new Map<string, HistoryEvent[]>();
const CLOSED_RUN_CACHE = 64;

/** Whether `e` closes its run (the last event of a closed run). */
export function isClosing(e: HistoryEvent | undefined): boolean {
  return !!(
    e?.workflowExecutionContinuedAsNewEventAttributes ||
    e?.workflowExecutionCompletedEventAttributes ||
    e?.workflowExecutionFailedEventAttributes ||
    e?.workflowExecutionTerminatedEventAttributes ||
    e?.workflowExecutionCanceledEventAttributes ||
    e?.workflowExecutionTimedOutEventAttributes
  );
}

/** Keeps the complete history of a closed run (its last event closes it). */
export function rememberClosedRun(workflowId: string, runId: string, events: HistoryEvent[]): void {
  if (!isClosing(events.at(-1))) return;
  const key = `${workflowId}/${runId}`;
  closedRuns.delete(key);
  closedRuns.set(key, events);
  if (closedRuns.size > CLOSED_RUN_CACHE) closedRuns.delete(closedRuns.keys().next().value!);
}

/** The history of one run, from the cache when the run has closed. */
export async function runHistory(client: Client, workflowId: string, runId: string): Promise<HistoryEvent[]> {
  const key = `${workflowId}/${runId}`;
  const cached = closedRuns.get(key);
  if (cached) {
    closedRuns.delete(key);
    closedRuns.set(key, cached);
    return cached;
  }
  const events = await readHistory(client, workflowId, runId);
  rememberClosedRun(workflowId, runId, events);
  return events;
}

/** One run of a session and where its events sit in the chain. */
export interface RunSpan {
  /** Set when the run is another session's: the prefix of a fork's log, read from the session it was forked from. */
  workflowId?: string;
  runId: string;
  /** Positions of this run's events are `offset + eventId`. */
  offset: number;
  events: HistoryEvent[];
}

/**
 * The runs of a session, oldest first, ending with `runId` (default: the latest run). Each run's first event
 * names the run it continued from, so the chain is walked backwards and returned forwards.
 */
export async function readRunChain(client: Client, workflowId: string, runId?: string): Promise<RunSpan[]> {
  const latest = runId ?? (await client.workflow.getHandle(workflowId).describe()).runId;
  const runs: Array<{ runId: string; events: HistoryEvent[] }> = [];
  for (let current: string | undefined = latest; current; ) {
    const events = await runHistory(client, workflowId, current);
    runs.unshift({ runId: current, events });
    current = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  const prefix = await forkPrefix(client, runs[0]?.events[0]);
  let offset = prefix.length > 0 ? (prefix.at(-1)!.offset + prefix.at(-1)!.events.length) : 0;
  return [
    ...prefix,
    ...runs.map((r) => {
      const span = { ...r, offset };
      offset += r.events.length;
      return span;
    }),
  ];
}

/**
 * The log a fork begins with: the runs of the session it was forked from, up to and with the history event at the
 * fork point (the origin's own prefix too, for a fork of a fork), tagged with the origin's workflow id. Empty for a
 * session that is not a fork. `first` is the first history event of the session's first run.
 */
export async function forkPrefix(client: Client, first: HistoryEvent | undefined): Promise<RunSpan[]> {
  const input = first?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  const fork = input ? (decodeJsonPayload(input) as SessionInput | undefined)?.fork : undefined;
  if (!fork) return [];
  const origin = await readRunChain(client, fork.session_id, fork.run_id);
  return origin
    .filter((r) => r.offset < fork.seq)
    .map((r) => ({
      ...r,
      workflowId: r.workflowId ?? fork.session_id,
      events: r.events.filter((e) => r.offset + Number(e.eventId) <= fork.seq),
    }));
}

/** A decoded log: its session events and the decoder (which holds the session input). */
export interface DecodedLog {
  events: SessionEvent[];
  decoder: LogDecoder;
  runs: RunSpan[];
}

/** Decodes a chain of runs into one ordered log. `before` cuts the last run before the first event it matches. */
export function decodeRuns(runs: RunSpan[], before?: (e: HistoryEvent) => boolean): DecodedLog {
  const decoder = new LogDecoder(decodeJsonPayload);
  const events: SessionEvent[] = [];
  for (const [i, run] of runs.entries()) {
    const last = i === runs.length - 1;
    const end = last && before ? run.events.findIndex(before) : -1;
    const slice = end >= 0 ? run.events.slice(0, end) : run.events;
    for (const e of slice) events.push(...decoder.decode(e, run.offset));
  }
  return { events, decoder, runs };
}

/** Reads and decodes a session's whole log (every run up to `runId`, default the latest). */
export async function readSessionLog(
  client: Client,
  workflowId: string,
  runId?: string,
  before?: (e: HistoryEvent) => boolean,
): Promise<DecodedLog> {
  return decodeRuns(await readRunChain(client, workflowId, runId), before);
}
