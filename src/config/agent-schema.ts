/**
 * The JSON Schema of agent files, generated from the validator (`agentJsonSchema()`), so editors can check and
 * complete agent files (`# yaml-language-server: $schema=...`). `npm run schema` writes it to
 * schema/agent.schema.json; a test fails when the committed file is stale.
 */
import { agentJsonSchema } from './agent.js';

/** Where the schema is committed, relative to the repository root. */
export const AGENT_SCHEMA_PATH = 'schema/agent.schema.json';

/** The schema file's text: the generated schema with a title and description, pretty-printed. */
export function renderAgentSchema(): string {
  const { $schema, ...rest } = agentJsonSchema();
  const schema = {
    $schema,
    title: 'Tandem agent definition',
    description:
      'A Tandem agent file: the fields of a Claude Managed Agents agent plus Tandem\'s sandbox and limits. Generated from src/config/agent.ts by "npm run schema"; do not edit.',
    ...rest,
  };
  return `${JSON.stringify(schema, null, 2)}\n`;
}
