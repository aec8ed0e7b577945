/**
 * MCP servers of an agent: which secrets they name, and the `mcp_toolset` policy of each tool. Pure and
 * workflow-safe: the workflow decides routing and confirmation with it, the worker lists and calls the servers.
 */
import { roster } from './tools.js';
import type { AgentDefinition, McpServerConfig, SecretValue } from './types.js';

/** `${secret:NAME}` inside a string value; NAME follows the vault's naming rule. */
export const SECRET_TEMPLATE = /\$\{secret:([^}\s]*)\}/g;

/** The secret names one value refers to (a `{secret}` object, or `${secret:NAME}` templates in a string). */
export function secretRefs(value: SecretValue): string[] {
  if (typeof value !== 'string') return [value.secret];
  return [...value.matchAll(SECRET_TEMPLATE)].map((m) => m[1] ?? '');
}

/** The secret names one server's configuration refers to (headers of a URL server, env of a stdio server). */
export function serverSecretNames(server: McpServerConfig): string[] {
  const values = server.type === 'url' ? Object.values(server.headers ?? {}) : Object.values(server.env ?? {});
  return [...new Set(values.flatMap(secretRefs))];
}

/** Every secret name the MCP servers of an agent and of the agents it may delegate to refer to, without repeats. */
export function agentSecretNames(agent: AgentDefinition): string[] {
  const names = new Set<string>();
  const seen = new Set<AgentDefinition>();
  const visit = (a: AgentDefinition): void => {
    if (seen.has(a)) return;
    seen.add(a);
    for (const s of a.mcp_servers ?? []) for (const n of serverSecretNames(s)) names.add(n);
    for (const sub of roster(a).values()) visit(sub);
  };
  visit(agent);
  return [...names];
}

/** The MCP server of this name, if the agent has one. */
export function mcpServerNamed(agent: AgentDefinition, name: string): McpServerConfig | undefined {
  return agent.mcp_servers?.find((s) => s.name === name);
}

/** Whether an MCP tool is offered, and whether each call waits for `user.tool_confirmation`. */
export interface McpToolPolicy {
  enabled: boolean;
  ask: boolean;
}

/**
 * Resolves the `mcp_toolset` entries for one tool of one server: a per-tool config wins over `default_config`;
 * tools are enabled by default and ask by default (`always_ask`, as in Managed Agents). A server that no
 * `mcp_toolset` names offers no tools. `auto` behaves as `always_allow`.
 */
export function mcpToolPolicy(agent: AgentDefinition, server: string, tool: string): McpToolPolicy {
  let policy: McpToolPolicy = { enabled: false, ask: true };
  for (const entry of agent.tools ?? []) {
    if (entry.type !== 'mcp_toolset' || entry.mcp_server_name !== server) continue;
    const defaults = entry.default_config ?? {};
    const specific = entry.configs?.find((c) => c.name === tool);
    const permission = specific?.permission_policy ?? defaults.permission_policy ?? { type: 'always_ask' };
    policy = { enabled: specific?.enabled ?? defaults.enabled ?? true, ask: permission.type === 'always_ask' };
  }
  return policy;
}
