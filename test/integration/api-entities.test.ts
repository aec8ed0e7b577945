/**
 * Entity workflows of the HTTP API over a long life: an agent updated many times continues as new (at the server's
 * suggestion, lowered here) and keeps every version; updates sent while it does are not lost.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRunChain } from '../../src/log/read.js';
import { startApiServer, type ApiServer } from '../../src/server/index.js';
import { Vault } from '../../src/vault/index.js';
import { useHarness } from '../helpers/env.js';

const UPDATES = 60;
// A dev server that suggests continue-as-new after 60 events instead of thousands.
const h = useHarness('entities', { continueAsNewAfter: 60 });
let api: ApiServer;

beforeAll(async () => {
  const vault = new Vault(join(mkdtempSync(join(tmpdir(), 'tandem-entities-')), 'vault.json'), {});
  api = await startApiServer({ tandem: h.tandem, keys: ['k'], vault, port: 0 });
});

afterAll(async () => {
  await api?.close();
});

describe('entity workflows', () => {
  it(`keeps all ${UPDATES + 1} versions of an agent across continue-as-new, with updates racing it`, async () => {
    const client = new Anthropic({ baseURL: api.url, apiKey: 'k', maxRetries: 0 });
    const agent = await client.beta.agents.create({ name: 'long-lived', model: 'claude-sonnet-5-5', system: 'v1' });
    // Half one at a time, half five at a time (unconditional updates, so they race each other and the rollover).
    for (let i = 2; i <= UPDATES / 2 + 1; i++) await client.beta.agents.update(agent.id, { system: `v${i}` });
    for (let i = UPDATES / 2 + 2; i <= UPDATES + 1; i += 5) {
      const batch = [0, 1, 2, 3, 4].map((j) => i + j).filter((n) => n <= UPDATES + 1);
      await Promise.all(batch.map((n) => client.beta.agents.update(agent.id, { metadata: { [`k${n}`]: `v${n}` } })));
    }
    const versions: number[] = [];
    for await (const v of client.beta.agents.versions.list(agent.id, { limit: 7 })) versions.push(v.version);
    expect(versions).toEqual(Array.from({ length: UPDATES + 1 }, (_, i) => UPDATES + 1 - i));
    const latest = await client.beta.agents.retrieve(agent.id);
    expect(latest.version).toBe(UPDATES + 1);
    expect(Object.keys(latest.metadata)).toHaveLength(UPDATES / 2);
    expect((await client.beta.agents.retrieve(agent.id, { version: 1 })).system).toBe('v1');
    const runs = await readRunChain(h.tandem.temporal, agent.id);
    expect(runs.length).toBeGreaterThan(1);
  });
});
