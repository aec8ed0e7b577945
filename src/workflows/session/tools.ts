/**
 * Tool routing: each call of a model turn runs (a built-in tool in the sandbox, an MCP tool on the worker), waits
 * for the user (`always_ask`, a custom tool), is delegated to a sub-agent, or is answered from a recording (a
 * replay). Returns when every call of the turn has its result in the log.
 */
import type { PendingAction } from '../../shared/types.js';
import { mcpRoute, toolErrorEvent } from '../mcp.js';
import type { Answers } from './answers.js';
import type { SessionCore, ToolUse } from './core.js';
import type { Delegation } from './delegation.js';
import type { Hands } from './hands.js';
import type { Replay } from './replay.js';

export class ToolRouter {
  constructor(
    private readonly s: SessionCore,
    private readonly hands: Hands,
    private readonly answers: Answers,
    private readonly delegation: Delegation,
    private readonly replay: Replay,
  ) {}

  /** Routes a model turn's tool calls: run, ask, or hand to the client. Returns when all have results. */
  async run(uses: ToolUse[]): Promise<void> {
    const s = this.s;
    const snapshotAfter = this.hands.snapshotCall(uses);
    const waiting: PendingAction[] = [];
    const delegations: ToolUse[] = [];
    for (const use of uses) {
      const tool = s.tools.get(use.name);
      const mcp = mcpRoute(s.input.agent, s.info.workflowId, use);
      const refused = use.input.tandem_error; // set by callModel when the input was too large to keep
      if (typeof refused === 'string') {
        s.record(toolErrorEvent(use, refused));
      } else if (s.state.replay && tool?.kind !== 'delegate' && (mcp || tool)) {
        // A replay: recorded results while the calls match, then live; nobody is there to confirm or answer.
        if (await this.replay.fromRecording(use, mcp ? 'mcp' : tool!.kind === 'custom' ? 'custom' : 'tool')) continue;
        if (tool?.kind === 'custom' || tool?.ask || mcp?.ask)
          s.record(toolErrorEvent({ id: use.id, mcp: use.mcp }, `${use.name} needs the user (an answer or a confirmation), and a replay has none.`));
        else await this.hands.runTool(use);
        if (s.interrupted) return;
      } else if (mcp && !mcp.ask) {
        await this.hands.runTool(use);
        if (s.interrupted) return;
      } else if (mcp) {
        waiting.push({ tool_use_id: use.id, name: use.name, kind: 'confirmation', input: use.input, mcp: use.mcp });
      } else if (!tool) {
        s.record({
          type: 'agent.tool_result',
          tool_use_id: use.id,
          is_error: true,
          content: [{ type: 'text', text: `Unknown tool "${use.name}". Available: ${[...s.tools.keys()].join(', ')}` }],
        });
      } else if (tool.kind === 'custom') {
        waiting.push({ tool_use_id: use.id, name: use.name, kind: 'custom_tool', input: use.input });
      } else if (tool.kind === 'delegate') {
        delegations.push(use);
      } else if (tool.ask) {
        waiting.push({ tool_use_id: use.id, name: use.name, kind: 'confirmation', input: use.input });
      } else {
        await this.hands.runTool(use, use === snapshotAfter);
        if (s.interrupted) return;
      }
    }
    await this.delegation.run(delegations);
    if (s.interrupted || waiting.length === 0) return;
    if (!(await this.answers.waitFor(waiting))) return;
    for (const w of waiting) {
      const a = this.answers.take(w.tool_use_id);
      if (!a || !('result' in a)) continue; // custom tool results are in the log as the signal itself
      if (a.result === 'allow') {
        await this.hands.runTool({ type: 'tool_use', id: w.tool_use_id, name: w.name, input: w.input, ...(w.mcp ? { mcp: w.mcp } : {}) });
        if (s.interrupted) return;
      } else {
        s.record(toolErrorEvent({ id: w.tool_use_id, mcp: w.mcp }, a.deny_message || 'The user denied this tool call.'));
      }
    }
  }
}
