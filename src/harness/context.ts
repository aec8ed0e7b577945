/**
 * Builds the model's context window from the session log (pure functions). The log is never altered; this only
 * selects and orders. Tool results always directly follow the assistant turn that asked for them, with any user
 * message that arrived meanwhile (steering) placed after them in the same user turn.
 */
import type { SessionEvent, SessionEventOf } from '../log/events.js';
import { contentText } from '../log/events.js';
import { DELEGATE_TOOL, modelId, resolveTools, roster } from '../shared/tools.js';
import type { AgentDefinition, DocumentBlock, ImageBlock, ModelBlock, PinnedSkill, TextBlock, UserContentBlock } from '../shared/types.js';

/** A Messages API content block as the context builder emits it. */
export type ContextBlock =
  | ModelBlock
  | { type: 'tool_result'; tool_use_id: string; content: string | Array<TextBlock | ImageBlock | DocumentBlock>; is_error?: boolean }
  | { type: 'text'; text: string; cache_control?: { type: 'ephemeral' } }
  | ImageBlock
  | DocumentBlock;

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

/** A compaction: the summary that stands for every conversation event before `first_kept_id`. */
export interface Compaction {
  summary: string;
  first_kept_id: string;
}

/** The latest compaction recorded in the log, if any. */
export function latestCompaction(events: readonly SessionEvent[]): Compaction | undefined {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    if (e.type === 'agent.thread_context_compacted')
      return { summary: e.summary, first_kept_id: e.first_kept_id };
  }
  return undefined;
}

const SUMMARY_HEADER = 'Summary of the earlier part of this session (older turns were compacted):';

/** The conversation plus, for each message, the id of the event it starts with. */
export interface BuiltMessages {
  messages: ContextMessage[];
  starts: string[];
}

/**
 * Builds the Messages API conversation from session events, in log order. With a compaction, the events before
 * its `first_kept_id` are replaced by one user message holding the summary.
 */
export function buildMessages(events: readonly SessionEvent[], compaction?: Compaction): BuiltMessages {
  const messages: ContextMessage[] = [];
  const starts: string[] = [];
  if (compaction) {
    messages.push({ role: 'user', content: [{ type: 'text', text: `${SUMMARY_HEADER}\n\n${compaction.summary}` }] });
    starts.push('0.0');
    events = events.filter((e) => compareIds(e.id, compaction.first_kept_id) >= 0);
  }
  let at = '0.0'; // id of the event being read
  let openUses: string[] = []; // tool_use ids of the last assistant turn still owed a result
  const results = new Map<string, { content: string | UserContentBlock[]; is_error: boolean }>();
  let deferred: UserContentBlock[] = []; // user input that arrived while tools were running
  let currentRequest: string | undefined;
  let modelInFlight = false;
  let lastModelStart: string | undefined; // id of the latest span.model_request_start

  const pushUser = (blocks: ContextBlock[]) => {
    if (blocks.length === 0) return;
    const last = messages[messages.length - 1];
    if (last?.role === 'user') last.content.push(...blocks);
    else {
      messages.push({ role: 'user', content: blocks });
      starts.push(at);
    }
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
    at = e.id;
    switch (e.type) {
      case 'user.message': {
        // A message that arrives while the model answers or tools run is read after that answer or those results.
        // Copies: the request's blocks are changed below (cache_control, inlined files), the log's events never.
        const blocks = e.content.map(copyBlock);
        if (openUses.length > 0 || modelInFlight) deferred.push(...blocks);
        else pushUser(blocks);
        break;
      }
      case 'user.define_outcome':
      case 'span.outcome_evaluation_end': {
        const note = outcomeNote(e);
        if (!note) break;
        if (openUses.length > 0 || modelInFlight) deferred.push(note);
        else pushUser([note]);
        break;
      }
      case 'span.model_request_start':
        // Every result of the previous tool turn is in by now: close it, so that a message arriving during this
        // call waits for this call's reply instead of landing before it.
        closeToolTurn();
        modelInFlight = true;
        lastModelStart = e.id;
        break;
      case 'span.model_request_end':
        modelInFlight = false;
        if (openUses.length === 0) {
          pushUser(deferred);
          deferred = [];
        }
        break;
      case 'agent.message':
      case 'agent.thinking':
      case 'agent.tool_use':
      case 'agent.mcp_tool_use':
      case 'agent.custom_tool_use': {
        if (e.session_thread_id !== undefined) break; // a sub-agent's call shown here: the child's context has it
        const request = e.model_request_id;
        if (request !== currentRequest) {
          closeToolTurn();
          messages.push({ role: 'assistant', content: [] });
          // An assistant turn starts with its model call's start span, so that a compaction kept from here also
          // keeps a message that arrived during that call (it comes after the answer, but is logged before it).
          starts.push(request !== undefined && request === lastModelStart ? request : e.id);
          currentRequest = request;
        }
        const turn = messages[messages.length - 1]!;
        if (e.type === 'agent.message') turn.content.push(...e.content);
        else if (e.type === 'agent.thinking') turn.content.push(e.block);
        else {
          const id = e.tool_use_id;
          // An MCP tool is named to the model as it was offered (`called_as` when that differs from its own name).
          const name = (e.type === 'agent.mcp_tool_use' ? e.called_as : undefined) ?? e.name;
          turn.content.push({ type: 'tool_use', id, name, input: e.input });
          openUses.push(id);
        }
        break;
      }
      case 'agent.tool_result':
      case 'agent.mcp_tool_result': {
        const id = e.type === 'agent.mcp_tool_result' ? e.mcp_tool_use_id : e.tool_use_id;
        if (openUses.includes(id) && !results.has(id)) {
          const content = contentText(e.content);
          results.set(id, { content, is_error: e.is_error === true });
        }
        break;
      }
      case 'user.custom_tool_result': {
        const id = e.custom_tool_use_id;
        // Images and documents go to the model as blocks of the result (copies: inlined files change them); text alone
        // as the string it always was.
        const media = typeof e.content !== 'string' && e.content.some((b) => b.type !== 'text');
        const content = media ? (e.content as UserContentBlock[]).map(copyBlock) : contentText(e.content);
        if (openUses.includes(id) && !results.has(id)) results.set(id, { content, is_error: e.is_error === true });
        break;
      }
      default:
        break;
    }
  }
  closeToolTurn();
  return { messages, starts };
}

/** A copy of a user block the request may change (cache_control, an inlined file) without changing the log. */
function copyBlock(b: UserContentBlock): UserContentBlock {
  return b.type === 'text' ? { type: 'text', text: b.text } : ({ ...b, source: { ...b.source } } as typeof b);
}

/** What the agent reads of an outcome: its definition, and the grader's feedback when it asks for a revision. */
function outcomeNote(e: SessionEventOf<'user.define_outcome' | 'span.outcome_evaluation_end'>): TextBlock | undefined {
  if (e.type === 'user.define_outcome') {
    return {
      type: 'text',
      text:
        `The user defined the outcome of this work: ${e.description}\n\n` +
        `When you end your turn, a grader checks the work against this rubric:\n${e.rubric.content}`,
    };
  }
  if (e.result !== 'needs_revision') return undefined;
  return {
    type: 'text',
    text: `The grader checked your work against the rubric (evaluation ${e.iteration + 1}) and asks for a revision:\n${e.explanation}`,
  };
}

function compareIds(a: string, b: string): number {
  const [as, ai] = a.split('.').map(Number);
  const [bs, bi] = b.split('.').map(Number);
  return (as ?? 0) - (bs ?? 0) || (ai ?? 0) - (bi ?? 0);
}

/** Rough token count of a request part (4 characters a token), used against the context budget. */
export function estimateTokens(value: unknown): number {
  // An inline image costs the model about what a 1092×1092 picture does (~1600 tokens), whatever its base64 length.
  const json = JSON.stringify(value, (_k, v: unknown) =>
    isImage(v) && v.source.type === 'base64' ? { ...v, source: { ...v.source, data: IMAGE_PLACEHOLDER } } : v,
  );
  return Math.ceil(json.length / 4);
}

/** 1600 tokens at 4 characters a token. */
const IMAGE_PLACEHOLDER = 'x'.repeat(6400);

function isImage(v: unknown): v is ImageBlock {
  return typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'image' && typeof (v as { source?: unknown }).source === 'object';
}

/** The tool definitions an agent offers: enabled built-ins (SDK definitions) and custom tools. */
export function toolDefinitions(agent: AgentDefinition, builtins: BuiltinDefinitions): ToolDefinition[] {
  const out: ToolDefinition[] = [];
  for (const t of resolveTools(agent).values()) {
    if (t.kind === 'custom') {
      out.push({ name: t.name, description: t.tool.description, input_schema: t.tool.input_schema });
    } else if (t.kind === 'delegate') {
      out.push(delegateDefinition(agent));
    } else {
      const def = builtins.get(t.name);
      if (def) out.push({ ...def });
    }
  }
  return out;
}

/** The `delegate` tool: its description lists the sub-agents the agent may hand work to. */
export function delegateDefinition(agent: AgentDefinition): ToolDefinition {
  const agents = [...roster(agent).values()];
  const list = agents.map((a) => `- ${a.name}${a.description ? `: ${a.description}` : ''}`).join('\n');
  return {
    name: DELEGATE_TOOL,
    description:
      'Hand a task to a sub-agent. It works in its own session with its own context and tools, and only its final ' +
      'answer comes back as the result of this call, so write the task so that it stands alone. Several ' +
      'delegations in one reply run at the same time. With sandbox "share" the sub-agent works in your sandbox ' +
      '(it sees and changes your files; you get the sandbox back when it is done); with "fresh" it gets its own.\n' +
      `Sub-agents:\n${list}`,
    input_schema: {
      type: 'object',
      properties: {
        agent: { type: 'string', enum: agents.map((a) => a.name), description: 'which sub-agent' },
        task: { type: 'string', description: 'the task, complete in itself' },
        sandbox: { type: 'string', enum: ['fresh', 'share'], description: 'share your sandbox, or a fresh one (default)' },
      },
      required: ['agent', 'task'],
    },
  };
}

/** Default context budget in (estimated) tokens. */
export const DEFAULT_CONTEXT_TOKENS = 160_000;

/** Options of {@link buildRequest}. */
export interface ContextOptions {
  /** Context budget in estimated tokens. */
  budgetTokens?: number;
  /** A compaction made for this very call (not yet in the log). */
  compaction?: Compaction;
  /** Tools offered besides the agent's built-in and custom ones (the MCP servers' tools), after them. */
  extraTools?: ToolDefinition[];
  /** Notes from the harness for this call (for example an MCP server that is down), after the system prompt. */
  notes?: string[];
  /** The session's skills: named and described after the system prompt, with where each one's SKILL.md is. */
  skills?: PinnedSkill[];
}

/** Where a session's skills are in its sandbox (read-only), each in a directory of its name. */
export const SKILLS_DIR = '/mnt/skills';

/** What the model is told of its skills: their names, what each is for, and where to read it. */
export function skillsNote(skills: readonly PinnedSkill[]): string {
  return [
    `You have skills: each is a directory of instructions and files for one kind of task, read-only under ${SKILLS_DIR}. ` +
      "When a task calls for one, read its SKILL.md first and follow it; open the skill's other files when it says to.",
    ...skills.map((s) => `- ${s.name} (${SKILLS_DIR}/${s.name}/SKILL.md): ${s.description}`),
  ].join('\n');
}

/** What {@link buildRequest} made, and what it could not fit. */
export interface BuiltRequest {
  request: ModelRequest;
  /** Tool results replaced by a placeholder to fit the budget. */
  trimmed: number;
  /** Set when the request is still over budget: summarise `head`; the rest starts at `first_kept_id`. */
  compact?: { head: ContextMessage[]; first_kept_id: string };
}

function trimmedNote(chars: number): string {
  return `[tool output removed from the context to stay within its budget: ${chars} characters; it is still in the session log]`;
}

/**
 * The full request: stable content first (tools, system), then the conversation, with prompt-cache breakpoints on
 * the last tool, the system prompt and the newest user turn so that repeated calls hit the cache. Over the budget,
 * old tool results are trimmed first (oldest first, never the newest turn); if that is not enough, the result asks
 * for a compaction of the older turns.
 */
export function buildRequest(
  agent: AgentDefinition,
  events: readonly SessionEvent[],
  builtins: BuiltinDefinitions,
  opts: ContextOptions = {},
): BuiltRequest {
  const budget = opts.budgetTokens ?? agent.limits?.context_tokens ?? DEFAULT_CONTEXT_TOKENS;
  const tools = [...toolDefinitions(agent, builtins), ...(opts.extraTools ?? []).map((t) => ({ ...t }))];
  const lastTool = tools[tools.length - 1];
  if (lastTool) lastTool.cache_control = { type: 'ephemeral' };
  const { messages, starts } = buildMessages(events, opts.compaction ?? latestCompaction(events));
  const maxTokens = typeof agent.model === 'string' ? undefined : agent.model.max_tokens;
  // The system prompt and the skills change never in a session: the cache point goes after the last of them.
  const stable = [agent.system, opts.skills?.length ? skillsNote(opts.skills) : undefined].filter((t): t is string => !!t);
  const system: NonNullable<ModelRequest['system']> = stable.map((text, i) => ({
    type: 'text' as const,
    text,
    ...(i === stable.length - 1 ? { cache_control: { type: 'ephemeral' as const } } : {}),
  }));
  for (const note of opts.notes ?? []) system.push({ type: 'text', text: note });
  const request: ModelRequest = {
    model: modelId(agent),
    max_tokens: maxTokens ?? 8192,
    ...(system.length > 0 ? { system } : {}),
    messages,
    ...(tools.length > 0 ? { tools } : {}),
  };

  let size = estimateTokens(request);
  let trimmed = 0;
  for (let i = 0; i < messages.length - 2 && size > budget; i++) {
    for (const block of messages[i]!.content) {
      if (block.type !== 'tool_result' || typeof block.content !== 'string' || size <= budget) continue;
      const note = trimmedNote(block.content.length);
      if (note.length >= block.content.length) continue;
      size -= Math.floor((block.content.length - note.length) / 4);
      block.content = note;
      trimmed++;
    }
  }
  let compact: BuiltRequest['compact'];
  if (size > budget) {
    // Keep the newest turns that fit in half the budget, starting at an assistant turn so tool calls and their
    // results stay together; everything before goes into the summary.
    const fixed = estimateTokens({ ...request, messages: [] });
    let split: number | undefined;
    for (let i = messages.length - 1; i >= 1; i--) {
      if (messages[i]!.role !== 'assistant') continue;
      if (fixed + estimateTokens(messages.slice(i)) > budget / 2 && split !== undefined) break;
      split = i;
    }
    if (split !== undefined) compact = { head: messages.slice(0, split), first_kept_id: starts[split]! };
  }

  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  const lastBlock = lastUser?.content[lastUser.content.length - 1];
  if (lastBlock && (lastBlock.type === 'text' || lastBlock.type === 'tool_result'))
    Object.assign(lastBlock, { cache_control: { type: 'ephemeral' } });
  return { request, trimmed, ...(compact ? { compact } : {}) };
}

/** The request that asks the model for a summary of `head` (the turns a compaction replaces). */
export function summaryRequest(agent: AgentDefinition, head: ContextMessage[]): ModelRequest {
  const messages = head.map((m) => ({ role: m.role, content: m.content.map((b) => ({ ...b })) }));
  const instruction: ContextBlock = {
    type: 'text',
    text:
      'Summarise the conversation above so that the work can go on from the summary alone: the goal, what was ' +
      'done and decided, files and commands that matter, results of tests, open problems and the next steps. ' +
      'Answer with the summary only.',
  };
  const last = messages[messages.length - 1];
  if (last?.role === 'user') last.content.push(instruction);
  else messages.push({ role: 'user', content: [instruction] });
  return {
    model: modelId(agent),
    max_tokens: 4096,
    system: [{ type: 'text', text: 'You compact the context of a long-running agent session into a faithful summary.' }],
    messages,
  };
}
