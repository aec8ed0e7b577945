/** Writes schema/agent.schema.json from the agent-file validator (`npm run schema`). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../src/cli/dev-server.js';
import { AGENT_SCHEMA_PATH, renderAgentSchema } from '../src/config/agent-schema.js';

const file = join(projectRoot, AGENT_SCHEMA_PATH);
writeFileSync(file, renderAgentSchema());
console.log(`wrote ${AGENT_SCHEMA_PATH}`);
