/**
 * Images and documents in user messages through the official SDK: inline ones and ones named by a file of the file
 * store reach the model's request; a file's bytes are read into each request and never enter the session's history;
 * a block the model could not take is a 400 naming it.
 */
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { readUntil, reply, toolUse, useApiHarness, type ApiStreamEvent } from '../helpers/api.js';

const h = useApiHarness('api-media', {
  assertDone: true,
  // The worker reads files from the API server's store, as one host does.
  worker: () => ({ env: { TANDEM_SNAPSHOT_STORE: h.filesDir } }),
});
const client = () => new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
const message = (err: unknown) => ((err as InstanceType<typeof Anthropic.APIError>).error as { error: { message: string } }).error.message;

/** A 1×1 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

describe('images and documents in user messages', () => {
  it('passes inline and file-named images and documents to the model, and keeps file bytes out of history', async () => {
    const c = client();
    // A second picture, only in the file store: its base64 must reach the model and never the history.
    const stored = Buffer.concat([PNG, Buffer.from('tandem-stored-image-marker')]);
    const image = await c.beta.files.upload({ file: await toFile(stored, 'chart.png', { type: 'image/png' }) });
    const notes = await c.beta.files.upload({ file: await toFile(Buffer.from('Quarterly notes: revenue rose.'), 'notes.txt', { type: 'text/plain' }) });
    const agent = await c.beta.agents.create({ name: 'viewer', model: 'claude-sonnet-5-5' });
    const env = await c.beta.environments.create({ name: 'media-env' });
    const session = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    h.model.push(reply('I see a pixel, a chart and notes.'));
    const stream = await c.beta.sessions.events.stream(session.id);
    const calls = h.model.requests.length;
    await c.beta.sessions.events.send(session.id, {
      events: [
        {
          type: 'user.message',
          content: [
            { type: 'text', text: 'What do these show?' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG.toString('base64') } },
            { type: 'image', source: { type: 'file', file_id: image.id } },
            { type: 'document', source: { type: 'file', file_id: notes.id }, title: 'Notes' },
          ],
        },
      ],
    });
    const events = await readUntil(stream, (e: ApiStreamEvent) => e.type === 'session.status_idle');
    stream.controller.abort();

    // The event shows the blocks as sent: the file by its id.
    const sent = events.find((e) => e.type === 'user.message');
    expect(sent?.content).toEqual([
      { type: 'text', text: 'What do these show?' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG.toString('base64') } },
      { type: 'image', source: { type: 'file', file_id: image.id } },
      { type: 'document', source: { type: 'file', file_id: notes.id }, title: 'Notes' },
    ]);
    // The model got every block, the files' bytes inline.
    expect(h.model.requests.length - calls).toBe(1);
    const user = (h.model.requests[calls]!.body.messages as Array<{ role: string; content: unknown[] }>).at(-1)!;
    expect(user.content.slice(0, 4)).toEqual([
      { type: 'text', text: 'What do these show?' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG.toString('base64') } },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: stored.toString('base64') } },
      expect.objectContaining({ type: 'document', title: 'Notes', source: { type: 'text', media_type: 'text/plain', data: 'Quarterly notes: revenue rose.' } }),
    ]);
    // The history holds the file ids, not the files.
    const raw = JSON.stringify(await h.client.workflow.getHandle(session.id).fetchHistory());
    // Every payload of the history, decoded (they are base64 in its JSON form).
    const history = [...raw.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8')).join('\n');
    expect(history).toContain(image.id);
    expect(history).not.toContain(stored.toString('base64'));
    expect(history).not.toContain('Quarterly notes');

    // A file gone by the next call is a sentence the model reads, not a failed call.
    await c.beta.files.delete(image.id);
    h.model.push(reply('The chart is gone.'));
    const again = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'And now?' }] }] });
    await readUntil(again, (e: ApiStreamEvent) => e.type === 'session.status_idle');
    again.controller.abort();
    expect(JSON.stringify(h.model.requests.at(-1)!.body.messages)).toContain(`[the image file ${image.id} is gone from the file store (deleted or expired)]`);
    await c.beta.sessions.delete(session.id);
  });

  it("passes a custom tool's result with an image to the model as blocks of the tool result", async () => {
    const c = client();
    const shot = await c.beta.files.upload({ file: await toFile(PNG, 'screen.png', { type: 'image/png' }) });
    const agent = await c.beta.agents.create({
      name: 'screen-reader',
      model: 'claude-sonnet-5-5',
      tools: [{ type: 'custom', name: 'screenshot', description: 'Takes a screenshot.', input_schema: { type: 'object', properties: {} } }],
    });
    const env = await c.beta.environments.create({ name: 'media-tools' });
    const session = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    h.model.push(reply(toolUse('screenshot', {}, 'tu_shot')), reply('The screen is one pixel.'));
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'look at the screen' }] }] });
    const waiting = await readUntil(stream, (e: ApiStreamEvent) => e.type === 'session.status_idle');
    const use = waiting.find((e) => e.type === 'agent.custom_tool_use')!;
    const calls = h.model.requests.length;
    await c.beta.sessions.events.send(session.id, {
      events: [
        {
          type: 'user.custom_tool_result',
          custom_tool_use_id: use.id,
          content: [
            { type: 'text', text: 'here it is' },
            { type: 'image', source: { type: 'file', file_id: shot.id } },
          ],
        },
      ],
    } as unknown as Anthropic.Beta.Sessions.EventSendParams);
    await readUntil(stream, (e: ApiStreamEvent) => e.type === 'session.status_idle');
    stream.controller.abort();
    const last = (h.model.requests[calls]!.body.messages as Array<{ role: string; content: Array<Record<string, unknown>> }>).at(-1)!;
    expect(last.content[0]).toMatchObject({
      type: 'tool_result',
      tool_use_id: 'tu_shot',
      content: [
        { type: 'text', text: 'here it is' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG.toString('base64') } },
      ],
    });
    await c.beta.sessions.delete(session.id);
  });

  it('refuses a block the model could not take, naming it', async () => {
    const c = client();
    const agent = await c.beta.agents.create({ name: 'picky', model: 'claude-sonnet-5-5' });
    const env = await c.beta.environments.create({ name: 'media-refusals' });
    const session = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const bad: Array<[unknown, RegExp]> = [
      [{ type: 'image', source: { type: 'base64', media_type: 'image/bmp', data: 'AAAA' } }, /^events\[0\]\.content\[1\]\.source\.media_type: must be one of image\/jpeg, image\/png, image\/gif, image\/webp/],
      [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'not base64!' } }, /^events\[0\]\.content\[1\]\.source\.data: must be base64/],
      [{ type: 'document', source: { type: 'base64', media_type: 'text/html', data: 'AAAA' } }, /^events\[0\]\.content\[1\]\.source\.media_type: must be one of application\/pdf/],
      [{ type: 'image', source: { type: 'url', url: 'http://example.com/a.png' } }, /^events\[0\]\.content\[1\]\.source\.url: must be an https URL/],
      [{ type: 'image', source: { type: 'file', file_id: 'file_000000000000000000000000' } }, /^events\[0\]\.content\[1\]\.source\.file_id: file "file_000000000000000000000000" was not found/],
      [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'A'.repeat(2 * 1024 * 1024) } }, /^events\[0\]\.content: is \d+ bytes; at most 1048576 fit in one event: upload large images and documents with the Files API/],
      [{ type: 'audio' }, /^events\[0\]\.content\[1\]\.type: must be text, image or document/],
    ];
    for (const [block, text] of bad) {
      const events = [{ type: 'user.message', content: [{ type: 'text', text: 'look' }, block] }];
      const err = await c.beta.sessions.events.send(session.id, { events } as unknown as Anthropic.Beta.Sessions.EventSendParams).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.BadRequestError);
      expect(message(err)).toMatch(text);
    }
    // Nothing of them reached the session.
    expect((await c.beta.sessions.events.list(session.id)).data.filter((e) => e.type === 'user.message')).toEqual([]);
    await c.beta.sessions.delete(session.id);
  });
});
