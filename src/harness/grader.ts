/**
 * The grader of outcomes (pure functions): its own context, built from the session log, the outcome and its
 * rubric, and the tools it may use — read-only ones in the session's sandbox, plus one to give its verdict.
 */
import type { SessionEvent } from '../log/events.js';
import { contentText } from '../log/events.js';
import { modelId } from '../shared/tools.js';
import type { AgentDefinition, OutcomeState } from '../shared/types.js';
import type { BuiltinDefinitions, ContextMessage, ModelRequest, ToolDefinition } from './context.js';

/** The tool the grader answers with. */
export const VERDICT_TOOL = 'submit_verdict';
/** Built-in tools the grader may run in the session's sandbox: they only look. */
export const GRADER_TOOLS = ['read', 'glob', 'grep'] as const;
/** The grader's verdicts; `max_iterations_reached` and `interrupted` are the session's, not the grader's. */
export const GRADER_VERDICTS = ['satisfied', 'needs_revision', 'failed'] as const;
/** Most model calls one evaluation may make (tool use included). */
export const MAX_GRADER_CALLS = 12;

const SYSTEM =
  'You are the grader of an agent\'s work. You did not do the work; judge it strictly against the rubric. Look at ' +
  'the files in the workspace with the tools when the rubric is about them: do not trust what the agent says it ' +
  `did. Then call ${VERDICT_TOOL} exactly once: "satisfied" when every criterion is met, "needs_revision" with ` +
  'concrete feedback the agent can act on when some are not, "failed" when the rubric cannot apply to this work.';

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)} [... ${text.length - max} more characters]`;
}

/** The session as the grader reads it: messages, tool calls and results (shortened), earlier feedback. */
export function renderTranscript(events: readonly SessionEvent[], maxChars = 120_000): string {
  const lines: string[] = [];
  for (const e of events) {
    switch (e.type) {
      case 'user.message':
        lines.push(`[user] ${contentText(e.content)}`);
        break;
      case 'agent.message':
        lines.push(`[agent] ${contentText(e.content)}`);
        break;
      case 'agent.tool_use':
      case 'agent.custom_tool_use':
        if (e.session_thread_id !== undefined) break; // a sub-agent's waiting call: its own transcript has it
        lines.push(`[agent calls ${e.name}] ${clip(JSON.stringify(e.input), 1_000)}`);
        break;
      case 'agent.mcp_tool_use':
        if (e.session_thread_id !== undefined) break;
        lines.push(`[agent calls ${e.name} of MCP server ${e.mcp_server_name}] ${clip(JSON.stringify(e.input), 1_000)}`);
        break;
      case 'agent.tool_result':
      case 'agent.mcp_tool_result':
        lines.push(`[${e.is_error ? 'tool error' : 'tool result'}] ${clip(contentText(e.content), 2_000)}`);
        break;
      case 'span.outcome_evaluation_end':
        lines.push(`[earlier evaluation: ${e.result}] ${e.explanation}`);
        break;
      default:
        break;
    }
  }
  const text = lines.join('\n');
  if (text.length <= maxChars) return text;
  return `[... the first ${text.length - maxChars} characters of the session are left out ...]\n${text.slice(-maxChars)}`;
}

/** The grader's tool definitions: read-only built-ins when there is a sandbox to look at, and the verdict. */
export function graderTools(builtins: BuiltinDefinitions, withSandbox: boolean): ToolDefinition[] {
  const tools: ToolDefinition[] = withSandbox ? GRADER_TOOLS.flatMap((n) => (builtins.get(n) ? [{ ...builtins.get(n)! }] : [])) : [];
  tools.push({
    name: VERDICT_TOOL,
    description: 'Give the verdict of this evaluation, with the explanation the agent and the user will read.',
    input_schema: {
      type: 'object',
      properties: {
        result: { type: 'string', enum: [...GRADER_VERDICTS] },
        explanation: { type: 'string', description: 'why; for needs_revision, exactly what is missing or wrong' },
      },
      required: ['result', 'explanation'],
    },
  });
  return tools;
}

/** The grader's first request for one evaluation of `outcome`. */
export function graderRequest(
  agent: AgentDefinition,
  outcome: OutcomeState,
  events: readonly SessionEvent[],
  tools: ToolDefinition[],
): ModelRequest {
  const messages: ContextMessage[] = [
    {
      role: 'user',
      content: [
        {
          type: 'text',
          text:
            `Outcome the user asked for:\n${outcome.description}\n\nRubric:\n${outcome.rubric}\n\n` +
            `This is evaluation ${outcome.iteration + 1} of at most ${outcome.max_iterations}. ` +
            `The agent's session so far:\n\n${renderTranscript(events)}`,
        },
      ],
    },
  ];
  return { model: modelId(agent), max_tokens: 4096, system: [{ type: 'text', text: SYSTEM }], messages, tools };
}
