import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { AGENT_SCHEMA_PATH, renderAgentSchema } from '../../src/config/agent-schema.js';

const root = join(import.meta.dirname, '..', '..');
const committed = () => readFileSync(join(root, AGENT_SCHEMA_PATH), 'utf8');

describe('agent JSON Schema', () => {
  it('the committed schema/agent.schema.json is what the validator generates (else: npm run schema)', () => {
    expect(committed(), 'schema/agent.schema.json is stale: run "npm run schema" and commit it').toBe(renderAgentSchema());
  });

  it('accepts the example agent and rejects what the validator rejects', () => {
    const validate = new Ajv2020({ strict: false }).compile(JSON.parse(committed()));
    const example = parse(readFileSync(join(root, 'examples', 'coding-agent.yaml'), 'utf8'));
    expect(validate(example), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ ...example, sandbox: { memory_mb: 'lots' } })).toBe(false);
    expect(validate({ ...example, tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bsh' }] }] })).toBe(false);
    expect(validate({ model: 'claude-sonnet-5-5' })).toBe(false);
  });

  it('the example and docs/agent-files.md point editors at the schema', () => {
    const first = readFileSync(join(root, 'examples', 'coding-agent.yaml'), 'utf8').split('\n')[0];
    expect(first).toBe('# yaml-language-server: $schema=../schema/agent.schema.json');
    expect(readFileSync(join(root, 'docs', 'agent-files.md'), 'utf8')).toContain('# yaml-language-server: $schema=');
  });
});
