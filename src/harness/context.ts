/**
 * Builds the model's context window from the session log (pure functions). The log is never altered; this only
 * selects and orders. Tool results always directly follow the assistant turn that asked for them, with any user
 * message that arrived meanwhile (steering) placed after them in the same user turn.
 */
import type { SessionEvent } from '../shared/events.js';
import { contentText } from '../shared/events.js';
import { modelId, resolveTools } from '../shared/tools.js';
import type { AgentDefinition, ModelBlock, TextBlock } from '../shared/types.js';

/** A Messages API content block as the context builder emits it. */
export type ContextBlock =
  | ModelBlock
  | { type: 'tool_result'; tool_use_id: string; content: string; is_error?: boolean }
  | { type: 'text'; text: string; cache_control?: { type: 'ephemeral' } };

/** A Messages API message. */
export interface ContextMessage {
  role: 'user' | 'assistant';
  content: ContextBlock[];
}

/** A tool definition offered to the model. */
export interface ToolDefinition {
  name: string;
  description: string;
  input_schema: Record<string, unknown>;
  cache_control?: { type: 'ephemeral' };
}

/** Everything a Messages API request needs besides the client. */
export interface ModelRequest {
  model: string;
  max_tokens: number;
  system?: Array<{ type: 'text'; text: string; cache_control?: { type: 'ephemeral' } }>;
  messages: ContextMessage[];
  tools?: ToolDefinition[];
}

/** Definitions of the built-in tools (name, description, input schema), supplied by the activity layer. */
export type BuiltinDefinitions = ReadonlyMap<string, ToolDefinition>;

const INTERRUPTED = 'No result: the tool call was interrupted before it finished.';

/** Builds the Messages API conversation from session events, in log order. */
export function buildMessages(events: readonly SessionEvent[]): ContextMessage[] {
  const messages: ContextMessage[] = [];
  let openUses: string[] = []; // tool_use ids of the last assistant turn still owed a result
  const results = new Map<string, { content: string; is_error: boolean }>();
  let deferred: TextBlock[] = []; // user text that arrived while tools were running
  let currentRequest: string | undefined;

  const pushUser = (blocks: ContextBlock[]) => {
    if (blocks.length === 0) return;
    const last = messages[messages.length - 1];
    if (last?.role === 'user') last.content.push(...blocks);
    else messages.push({ role: 'user', content: blocks });
  };
  const closeToolTurn = () => {
    if (openUses.length === 0) return;
    const blocks: ContextBlock[] = openUses.map((id) => {
      const r = results.get(id);
      return { type: 'tool_result', tool_use_id: id, content: r?.content ?? INTERRUPTED, is_error: r?.is_error ?? true };
    });
    openUses = [];
    results.clear();
    pushUser([...blocks, ...deferred]);
    deferred = [];
  };

  for (const e of events) {
    switch (e.type) {
      case 'user.message': {
        const text = e.content as TextBlock[];
        if (openUses.length > 0) deferred.push(...text);
        else pushUser(text.map((b) => ({ type: 'text', text: b.text })));
        break;
      }
      case 'agent.message':
      case 'agent.thinking':
      case 'agent.tool_use':
      case 'agent.custom_tool_use': {
        const request = e.model_request_id as string;
        if (request !== currentRequest) {
          closeToolTurn();
          messages.push({ role: 'assistant', content: [] });
          currentRequest = request;
        }
        const turn = messages[messages.length - 1]!;
        if (e.type === 'agent.message') turn.content.push(...(e.content as TextBlock[]));
        else if (e.type === 'agent.thinking') turn.content.push(e.block as ModelBlock);
        else {
          const id = e.tool_use_id as string;
          turn.content.push({ type: 'tool_use', id, name: e.name as string, input: e.input as Record<string, unknown> });
          openUses.push(id);
        }
        break;
      }
      case 'agent.tool_result': {
        const id = e.tool_use_id as string;
        if (openUses.includes(id) && !results.has(id)) {
          const content = contentText(e.content as TextBlock[]);
          results.set(id, { content, is_error: e.is_error === true });
        }
        break;
      }
      case 'user.custom_tool_result': {
        const id = e.custom_tool_use_id as string;
        if (openUses.includes(id) && !results.has(id))
          results.set(id, { content: contentText(e.content as string | TextBlock[]), is_error: e.is_error === true });
        break;
      }
      default:
        break;
    }
  }
  closeToolTurn();
  return messages;
}

/** The tool definitions an agent offers: enabled built-ins (SDK definitions) and custom tools. */
export function toolDefinitions(agent: AgentDefinition, builtins: BuiltinDefinitions): ToolDefinition[] {
  const out: ToolDefinition[] = [];
  for (const t of resolveTools(agent).values()) {
    if (t.kind === 'custom') {
      out.push({ name: t.name, description: t.tool.description, input_schema: t.tool.input_schema });
    } else {
      const def = builtins.get(t.name);
      if (def) out.push({ ...def });
    }
  }
  return out;
}

/**
 * The full request: stable content first (tools, system), then the conversation, with prompt-cache breakpoints on
 * the last tool, the system prompt and the newest user turn so that repeated calls hit the cache.
 */
export function buildRequest(
  agent: AgentDefinition,
  events: readonly SessionEvent[],
  builtins: BuiltinDefinitions,
): ModelRequest {
  const tools = toolDefinitions(agent, builtins);
  const lastTool = tools[tools.length - 1];
  if (lastTool) lastTool.cache_control = { type: 'ephemeral' };
  const messages = buildMessages(events);
  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  const lastBlock = lastUser?.content[lastUser.content.length - 1];
  if (lastBlock && (lastBlock.type === 'text' || lastBlock.type === 'tool_result'))
    Object.assign(lastBlock, { cache_control: { type: 'ephemeral' } });
  const maxTokens = typeof agent.model === 'string' ? undefined : agent.model.max_tokens;
  return {
    model: modelId(agent),
    max_tokens: maxTokens ?? 8192,
    ...(agent.system ? { system: [{ type: 'text', text: agent.system, cache_control: { type: 'ephemeral' } }] } : {}),
    messages,
    ...(tools.length > 0 ? { tools } : {}),
  };
}
