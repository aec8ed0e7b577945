/**
 * Reads a session's log: the workflow history of one run, decoded into session events. The activity layer uses it
 * to build the model's context; clients use it to show the log.
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { LogDecoder, type PayloadDecoder } from '../harness/decode.js';
import type { SessionEvent } from '../shared/events.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** Plain JSON decoding of payloads with the default converter. */
export const decodeJsonPayload: PayloadDecoder = (p) =>
  defaultPayloadConverter.fromPayload(p as Parameters<typeof defaultPayloadConverter.fromPayload>[0]);

/** Reads the raw history events of one run, optionally only up to (and including) event `upTo`. */
export async function readHistory(
  client: Client,
  workflowId: string,
  runId?: string,
  upTo?: number,
): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const res = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId, runId },
      nextPageToken,
      maximumPageSize: 1000,
    });
    for (const e of res.history?.events ?? []) {
      if (upTo !== undefined && Number(e.eventId) > upTo) return events;
      events.push(e);
    }
    nextPageToken = res.nextPageToken?.length ? res.nextPageToken : undefined;
  } while (nextPageToken);
  return events;
}

/** A decoded run: its session events and the session input from its first event. */
export interface DecodedLog {
  events: SessionEvent[];
  decoder: LogDecoder;
}

/** Reads and decodes one run of a session's log, optionally only the events before `before`. */
export async function readSessionLog(
  client: Client,
  workflowId: string,
  runId?: string,
  before?: (e: HistoryEvent) => boolean,
): Promise<DecodedLog> {
  const decoder = new LogDecoder(decodeJsonPayload);
  const history = await readHistory(client, workflowId, runId);
  const end = before ? history.findIndex(before) : -1;
  const slice = end >= 0 ? history.slice(0, end) : history;
  return { events: slice.flatMap((e) => decoder.decode(e)), decoder };
}
