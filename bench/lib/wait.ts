/** Waiting on sessions: for an event, or for a condition (polled), never for a fixed time. */
import type { TandemClient } from '../../src/client/index.js';
import type { SessionEvent } from '../../src/log/events.js';
import { sleep } from './stats.js';

/** Waits for the first event after `after` that matches `pred`; resolves with it and the time it was seen. */
export async function waitForEvent(
  tandem: TandemClient,
  id: string,
  pred: (e: SessionEvent) => boolean,
  after?: string,
  timeoutMs = 120_000,
): Promise<{ event: SessionEvent; seenAt: number }> {
  const seen = await followUntil(tandem, id, pred, after, timeoutMs);
  return { event: seen.event, seenAt: seen.seenAt };
}

/**
 * Follows a session's log after `after` until an event matches `pred`; resolves with that event, the time it was
 * seen, and when each event type was first seen on the way (client clock).
 */
export async function followUntil(
  tandem: TandemClient,
  id: string,
  pred: (e: SessionEvent) => boolean,
  after?: string,
  timeoutMs = 120_000,
): Promise<{ event: SessionEvent; seenAt: number; firstSeen: Map<string, number>; events: SessionEvent[] }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const firstSeen = new Map<string, number>();
  const events: SessionEvent[] = [];
  try {
    for await (const e of tandem.followEvents(id, { signal: abort.signal, ...(after ? { after } : {}) })) {
      const now = Date.now();
      events.push(e);
      if (!firstSeen.has(e.type)) firstSeen.set(e.type, now);
      if (pred(e)) return { event: e, seenAt: now, firstSeen, events };
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  throw new Error(`session ${id}: no matching event within ${timeoutMs} ms`);
}

/** Polls until `fn` resolves truthy (every `everyMs`); a rejection counts as not yet. */
export async function until<T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
