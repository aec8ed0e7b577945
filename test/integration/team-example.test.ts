/**
 * The team example (examples/team) run as a user runs it, `tandem run`, against the scripted Messages API: the lead
 * writes a file, hands its sandbox to the reviewer sub-agent, and reports the review.
 */
import { describe, expect, it } from 'vitest';
import { reply, text, toolUse, type PlainStep, type RecordedRequest } from '../fakes/messages-server.js';
import { runCli, toolResults, useHarness } from '../helpers/env.js';

const steps: Record<'lead' | 'reviewer', PlainStep[]> = {
  lead: [
    reply(text('Writing it.'), toolUse('write', { file_path: '/workspace/slug.py', content: 'def slugify(s):\n    return s.lower().replace(" ", "-")\n' }, 'tu_w')),
    reply(toolUse('delegate', { agent: 'reviewer', task: 'Review /workspace/slug.py', sandbox: 'share' }, 'tu_review')),
    reply('slugify() is written and reviewed: the reviewer found no bugs but asks for tests.'),
  ],
  reviewer: [
    reply(toolUse('read', { file_path: '/workspace/slug.py' }, 'tu_read')),
    reply('No bugs; add tests for empty strings.'),
  ],
};
const requests: Record<'lead' | 'reviewer', RecordedRequest[]> = { lead: [], reviewer: [] };
function route(req: RecordedRequest): PlainStep {
  const who = JSON.stringify(req.body.system ?? '').includes('You review code') ? 'reviewer' : 'lead';
  requests[who].push(req);
  const step = steps[who].shift();
  if (!step) throw new Error(`no ${who} step left`);
  return step;
}
const h = useHarness('team', { responder: route });

describe('examples/team', () => {
  it('tandem run: the lead delegates the review to the reviewer in its own sandbox', async () => {
    const run = await runCli(['run', 'examples/team/lead.yaml', 'Write slugify() and get it reviewed'], h.queue, h.model.url);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/session\.thread_created\s+reviewer /);
    expect(run.stdout).toContain('reviewed: the reviewer found no bugs');
    // The reviewer read the lead's file in the shared sandbox, with only its read-only tools offered.
    expect(toolResults(requests.reviewer[1]!).get('tu_read')?.content).toContain('def slugify');
    expect((requests.reviewer[0]!.body.tools ?? []).map((t) => t.name).sort()).toEqual(['glob', 'grep', 'read']);
    expect((requests.lead[0]!.body.tools ?? []).map((t) => t.name)).toContain('delegate');
    expect(toolResults(requests.lead[2]!).get('tu_review')?.content).toBe('No bugs; add tests for empty strings.');
    const sessionId = /session (sesn_\w+) started/.exec(run.stderr)?.[1];
    expect(sessionId).toBeDefined();
    await h.client.workflow.getHandle(sessionId!).cancel();
  });
});
