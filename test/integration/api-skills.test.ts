/**
 * Skills through the official SDK: a skill uploaded as its directory, its versions, and an agent that names it: the
 * model is told the skill's name, description and where its SKILL.md is, and reads the uploaded text there in a real
 * sandbox. Pre-built Anthropic skills are refused naming the skill.
 */
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { readUntil, reply, toolUse, useApiHarness, type ApiStreamEvent } from '../helpers/api.js';

const h = useApiHarness('api-skills', {
  assertDone: true,
  // The worker reads skills from the API server's store, as one host does.
  worker: () => ({ env: { TANDEM_SNAPSHOT_STORE: h.filesDir } }),
});
const client = () => new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
const message = (err: unknown) => ((err as InstanceType<typeof Anthropic.APIError>).error as { error: { message: string } }).error.message;

const SKILL_MD = '---\nname: charts\ndescription: Makes bar charts from CSV files with scripts/chart.py.\n---\n# Charts\nRun `python3 scripts/chart.py data.csv`.\n';

describe('skills through the official SDK', () => {
  it('stores a skill and its versions, and a session of an agent with it reads its SKILL.md', async () => {
    const c = client();
    const skill = await c.beta.skills.create({
      display_name: 'Bar charts',
      files: [await toFile(Buffer.from(SKILL_MD), 'charts/SKILL.md'), await toFile(Buffer.from('print("chart")\n'), 'charts/scripts/chart.py')],
    });
    expect(skill).toMatchObject({ type: 'skill', display_name: 'Bar charts', source: { type: 'custom' } });
    expect(await c.beta.skills.retrieve(skill.id)).toEqual(skill);
    expect((await c.beta.skills.list()).data.map((s) => s.id)).toContain(skill.id);
    const first = await c.beta.skills.versions.retrieve(skill.latest_version_id, { skill_id: skill.id });
    expect(first).toMatchObject({ type: 'skill_version', skill_id: skill.id, name: 'charts', description: 'Makes bar charts from CSV files with scripts/chart.py.' });

    // A second version becomes the latest; the first can then go, the latest cannot while the skill stays.
    const second = await c.beta.skills.versions.create(skill.id, { files: [await toFile(Buffer.from(SKILL_MD.replace('# Charts', '# Charts v2')), 'charts/SKILL.md')] });
    expect((await c.beta.skills.retrieve(skill.id)).latest_version_id).toBe(second.id);
    expect((await c.beta.skills.versions.list(skill.id)).data.map((v) => v.id)).toEqual([second.id, first.id]);
    const latest = await c.beta.skills.versions.delete(second.id, { skill_id: skill.id }).catch((e: unknown) => e);
    expect(message(latest)).toMatch(/is the latest of skill/);
    expect(await c.beta.skills.versions.delete(first.id, { skill_id: skill.id })).toEqual({ id: first.id, type: 'skill_version_deleted' });

    const agent = await c.beta.agents.create({
      name: 'charter',
      model: 'claude-sonnet-5-5',
      tools: [{ type: 'agent_toolset_20260401' }],
      skills: [{ type: 'custom', skill_id: skill.id }],
    });
    const env = await c.beta.environments.create({ name: 'skills-env' });
    const session = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    expect(session.agent.skills).toEqual([{ type: 'custom', skill_id: skill.id, version: second.id }]);

    const calls = h.model.requests.length;
    h.model.push(reply(toolUse('read', { file_path: '/mnt/skills/charts/SKILL.md' }, 'tu_skill')), reply('I will follow the skill.'));
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'chart it' }] }] });
    const events = await readUntil(stream, (e: ApiStreamEvent) => e.type === 'session.status_idle');
    stream.controller.abort();
    const system = JSON.stringify(h.model.requests[calls]!.body.system);
    expect(system).toContain('- charts (/mnt/skills/charts/SKILL.md): Makes bar charts from CSV files with scripts/chart.py.');
    const result = events.find((e) => e.type === 'agent.tool_result');
    expect(result?.is_error).toBe(false);
    expect(JSON.stringify(result?.content)).toContain('Charts v2');
    await c.beta.sessions.delete(session.id);
  });

  it('refuses pre-built skills, unknown skills and uploads it could not mount, naming each', async () => {
    const c = client();
    const prebuilt = await c.beta.agents
      .create({ name: 'xlsx', model: 'claude-sonnet-5-5', skills: [{ type: 'anthropic', skill_id: 'xlsx' }] })
      .catch((e: unknown) => e);
    expect(prebuilt).toBeInstanceOf(Anthropic.BadRequestError);
    expect(message(prebuilt)).toBe('skills[0]: Tandem does not ship Anthropic\'s pre-built skills ("xlsx"); upload it as a custom skill with skills.create');

    const agent = await c.beta.agents.create({ name: 'ghost', model: 'claude-sonnet-5-5', skills: [{ type: 'custom', skill_id: 'skill_000000000000000000000000' }] });
    const env = await c.beta.environments.create({ name: 'skills-refusals' });
    const unknown = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.BadRequestError);
    expect(message(unknown)).toBe('agent.skills: skill "skill_000000000000000000000000" was not found');

    const noSkillMd = await c.beta.skills.create({ files: [await toFile(Buffer.from('hi'), 'thing/README.md')] }).catch((e: unknown) => e);
    expect(noSkillMd).toBeInstanceOf(Anthropic.BadRequestError);
    expect(message(noSkillMd)).toBe('files: the skill\'s directory "thing" has no SKILL.md');
    const gone = await c.beta.skills.retrieve('skill_000000000000000000000000').catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(Anthropic.NotFoundError);
  });
});
