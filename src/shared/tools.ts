/** How an agent's `tools` entries resolve into the tools a session offers the model. Pure, workflow-safe. */
import { BUILTIN_TOOLS, type AgentDefinition, type BuiltinToolName, type CustomTool } from './types.js';

/** A tool the model may call, with how the harness routes it. */
export type ResolvedTool =
  | { kind: 'builtin'; name: BuiltinToolName; ask: boolean }
  | { kind: 'custom'; name: string; tool: CustomTool }
  | { kind: 'delegate'; name: typeof DELEGATE_TOOL };

/** The tool an agent with a `multiagent` roster gets: hands a task to a sub-agent (a child session). */
export const DELEGATE_TOOL = 'delegate';

/** The agents an agent may delegate to, by name (`self` is the agent itself). */
export function roster(agent: AgentDefinition): Map<string, AgentDefinition> {
  const out = new Map<string, AgentDefinition>();
  for (const entry of agent.multiagent?.agents ?? []) {
    if (typeof entry === 'string') continue; // a file path the loader did not inline: not usable
    const def = entry.type === 'self' ? agent : entry.definition;
    out.set(def.name, def);
  }
  return out;
}

/** Resolves `tools` into the enabled tools by name. Later entries win over earlier ones for the same name. */
export function resolveTools(agent: AgentDefinition): Map<string, ResolvedTool> {
  const out = new Map<string, ResolvedTool>();
  for (const entry of agent.tools ?? []) {
    if (entry.type === 'custom') {
      out.set(entry.name, { kind: 'custom', name: entry.name, tool: entry });
      continue;
    }
    if (entry.type === 'mcp_toolset') continue; // listed and routed by the harness (shared/mcp.ts)
    const defaults = entry.default_config ?? {};
    for (const name of BUILTIN_TOOLS) {
      const specific = entry.configs?.find((c) => c.name === name);
      const enabled = specific?.enabled ?? defaults.enabled ?? true;
      const policy = specific?.permission_policy ?? defaults.permission_policy ?? { type: 'always_allow' };
      if (enabled) out.set(name, { kind: 'builtin', name, ask: policy.type === 'always_ask' });
      else out.delete(name);
    }
  }
  if (roster(agent).size > 0) out.set(DELEGATE_TOOL, { kind: 'delegate', name: DELEGATE_TOOL });
  return out;
}

/** The model id of an agent's `model` field. */
export function modelId(agent: AgentDefinition): string {
  return typeof agent.model === 'string' ? agent.model : agent.model.id;
}
