/**
 * How the session workflow routes a tool call that `callModel` marked as an MCP tool: to `callMcpTool` on the
 * worker (no sandbox), after a confirmation when its `mcp_toolset` policy asks. Deterministic: decisions come from
 * the pinned agent definition and the recorded model reply only.
 */
import type { RecordedEvent } from '../log/events.js';
import { mcpServerNamed, mcpToolPolicy } from '../shared/mcp.js';
import type { AgentDefinition, CallMcpToolInput, McpToolRef } from '../shared/types.js';

/** A tool call as the workflow holds it. */
interface Use {
  id: string;
  input: Record<string, unknown>;
  mcp?: McpToolRef;
}

/** The route of an MCP tool call: the `callMcpTool` input and whether to ask first; undefined for an unknown server. */
export function mcpRoute(
  agent: AgentDefinition,
  sessionId: string,
  use: Use,
): { call: CallMcpToolInput; ask: boolean } | undefined {
  if (!use.mcp) return undefined;
  const server = mcpServerNamed(agent, use.mcp.server);
  if (!server) return undefined;
  const policy = mcpToolPolicy(agent, use.mcp.server, use.mcp.tool);
  return {
    call: { session_id: sessionId, tool_use_id: use.id, server, tool: use.mcp.tool, input: use.input },
    ask: policy.ask,
  };
}

/** A tool error the harness records itself (refused input, denied call), as the result type of the call's kind. */
export function toolErrorEvent(use: { id: string; mcp?: McpToolRef }, text: string): RecordedEvent {
  const content = [{ type: 'text' as const, text }];
  if (use.mcp) {
    return { type: 'agent.mcp_tool_result', mcp_tool_use_id: use.id, mcp_server_name: use.mcp.server, name: use.mcp.tool, is_error: true, content };
  }
  return { type: 'agent.tool_result', tool_use_id: use.id, is_error: true, content };
}
