/** `tandem agents validate`: checks an agent file without starting anything. */
import type { Command } from 'commander';
import { loadAgentFile } from '../config/agent.js';
import { resolveTools } from '../shared/tools.js';
import { action, type Io } from './io.js';
import { forTerminal } from './terminal.js';

export interface ValidateOptions {
  /** The agent file (YAML or JSON). */
  file: string;
  /** Print the validated definition as JSON instead of the OK line. */
  json?: boolean;
}

/** `tandem agents validate`: one OK line naming the agent, model and tools, or the file's errors (exit 2). */
export async function validateRun(io: Io, o: ValidateOptions): Promise<void> {
  const agent = await loadAgentFile(o.file);
  if (o.json) return io.out(JSON.stringify(agent));
  const model = typeof agent.model === 'string' ? agent.model : agent.model.id;
  const tools = [...resolveTools(agent).keys()];
  io.out(forTerminal(`OK ${o.file}: agent ${agent.name}, model ${model}, tools ${tools.length ? tools.join(' ') : 'none'}`));
}

/** Adds the `agents` verb group to the program. */
export function addAgentCommands(program: Command, io: Io): void {
  const agents = program.command('agents').description('work with agent definition files');
  agents
    .command('validate')
    .description('check an agent file: exit 0 with one OK line, or exit 2 with file:line:col errors')
    .argument('<file>', 'agent definition (YAML or JSON)')
    .option('--json', 'print the validated definition as JSON instead of the OK line')
    .action(action(io, (file: string, o: { json?: boolean }) => validateRun(io, { file, ...o })));
}
