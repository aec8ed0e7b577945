/**
 * The check every fault case ends with: the session's log is complete and ordered, every user message appears
 * exactly once, and the session is still usable.
 */
import { expect } from 'vitest';
import { compareEventIds, type TandemClient } from '../../src/client/index.js';
import type { SessionEvent } from '../../src/log/events.js';
import type { SessionState } from '../../src/shared/types.js';
import { reply, type MessagesServer } from '../fakes/messages-server.js';
import { waitFor } from '../helpers/env.js';

function texts(e: SessionEvent): string {
  return (e.content as Array<{ text: string }>).map((b) => b.text).join('');
}

/** Waits until the session is idle after at least `minTurns` model calls. */
export async function idle(tandem: TandemClient, id: string, minTurns: number, timeoutMs = 120_000): Promise<SessionState> {
  return waitFor(
    () => tandem.getSession(id),
    (s) => s.status === 'idle' && s.stop_reason?.type !== 'requires_action' && s.turn >= minTurns,
    timeoutMs,
    `session ${id} idle after ${minTurns} turns`,
  );
}

/**
 * Asserts the log is whole: positions strictly increase; the user messages are exactly `userTexts`, in order;
 * every tool call has exactly one result. Then proves the session still answers.
 */
export async function expectSessionIntact(
  tandem: TandemClient,
  model: MessagesServer,
  id: string,
  userTexts: string[],
  opts: { scripted?: boolean } = {},
): Promise<SessionEvent[]> {
  const events = await tandem.getEvents(id);
  for (let i = 1; i < events.length; i++) expect(compareEventIds(events[i - 1]!.id, events[i]!.id)).toBeLessThan(0);
  expect(events.filter((e) => e.type === 'user.message').map(texts)).toEqual(userTexts);
  const uses = events.filter((e) => e.type === 'agent.tool_use').map((e) => e.tool_use_id);
  const results = events.filter((e) => e.type === 'agent.tool_result').map((e) => e.tool_use_id);
  expect([...results].sort()).toEqual([...uses].sort());

  const before = await tandem.getSession(id);
  if (opts.scripted !== false) model.push(reply('still here'));
  await tandem.sendMessage(id, 'are you still there?');
  const after = await idle(tandem, id, before.turn + 1);
  expect(after.stop_reason?.type).toBe('end_turn');
  // The model saw every user message exactly once, and so does the log.
  const seen = (model.requests.at(-1)!.body.messages ?? [])
    .filter((m) => m.role === 'user')
    .flatMap((m) => (m.content as Array<{ type: string; text?: string }>).filter((b) => b.type === 'text').map((b) => b.text));
  if (opts.scripted !== false) expect(seen).toEqual([...userTexts, 'are you still there?']);
  const logged = await tandem.getEvents(id, { types: ['user.message'] });
  expect(logged.map(texts)).toEqual([...userTexts, 'are you still there?']);
  return events;
}
