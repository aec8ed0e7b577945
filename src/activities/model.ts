/**
 * `callModel`: reads the session log up to the workflow's cursor, builds the context window from it, and streams
 * one Messages API call. Temporal owns retries: the client has `maxRetries: 0` and every error is translated into
 * a typed `ApplicationFailure`.
 */
import Anthropic from '@anthropic-ai/sdk';
import { betaAgentToolset20260401 } from '@anthropic-ai/sdk/tools/agent-toolset/node';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { SessionLogCache } from '../log/cache.js';
import {
  buildRequest,
  estimateTokens,
  summaryRequest,
  type BuiltinDefinitions,
  type ModelRequest,
  toolDefinitions,
  type ToolDefinition,
} from '../harness/context.js';
import { GRADER_TOOLS, GRADER_VERDICTS, graderRequest, graderTools, MAX_GRADER_CALLS, VERDICT_TOOL } from '../harness/grader.js';
import { Failure } from '../shared/failures.js';
import { costMicros } from '../shared/pricing.js';
import type { FileStore } from '../files/store.js';
import { inlineFiles } from './media.js';
import { ActivityNames, type ActivityName } from '../shared/names.js';
import type {
  CallModelInput,
  CallModelResult,
  ExecuteInput,
  ExecuteResult,
  GradeOutcomeInput,
  GradeOutcomeResult,
  ModelBlock,
  Usage,
} from '../shared/types.js';
import { annotateMcpUses, type McpHub, type McpOffer } from './mcp.js';

/** Definitions (name, description, schema) of the built-in tools, taken from the SDK's own toolset. */
export const builtinDefinitions: BuiltinDefinitions = new Map(
  betaAgentToolset20260401({ workdir: '/workspace' }).map((t): [string, ToolDefinition] => [
    t.name,
    {
      name: t.name,
      description: (t as { description?: string }).description ?? t.name,
      input_schema: (t as { input_schema: Record<string, unknown> }).input_schema,
    },
  ]),
);

/**
 * How long the API asks to wait before the next attempt: `retry-after-ms` (milliseconds), else `retry-after`
 * (seconds, or an HTTP date). Undefined when it says nothing usable; a wait over 10 minutes is capped there.
 */
export function retryDelayMs(headers: { get(name: string): string | null } | undefined): number | undefined {
  const ms = Number(headers?.get('retry-after-ms') ?? NaN);
  if (Number.isFinite(ms) && ms > 0) return Math.min(ms, 600_000);
  const after = headers?.get('retry-after');
  if (!after) return undefined;
  const seconds = Number(after);
  const delay = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(after) - Date.now();
  return Number.isFinite(delay) && delay > 0 ? Math.min(delay, 600_000) : undefined;
}

/**
 * Translates an SDK error into a typed failure (DESIGN rule 4): by status and the API's error type, with the wait
 * the API asks for and its `x-should-retry` verdict.
 */
export function translateModelError(err: unknown): ApplicationFailure {
  if (err instanceof Anthropic.APIError && !(err instanceof Anthropic.APIConnectionError)) {
    // An error event inside a 200 stream has no status: take it from the error type.
    const body = err.error as { error?: { type?: string; message?: string } } | undefined;
    const apiType = body?.error?.type;
    const status = err.status ?? (apiType === 'overloaded_error' ? 529 : 500);
    const message = `model API ${status}${apiType ? ` ${apiType}` : ''}: ${body?.error?.message ?? err.message}`;
    const nextRetryDelay = retryDelayMs(err.headers);
    // The API's own word on retrying (`x-should-retry`) wins over the status, as it does in the SDK.
    const shouldRetry = err.headers?.get?.('x-should-retry');
    const retryable = (type: string) =>
      ApplicationFailure.create({ type, message, nonRetryable: shouldRetry === 'false', nextRetryDelay, cause: err });
    const fatal = (type: string) => ApplicationFailure.create({ type, message, nonRetryable: shouldRetry !== 'true', cause: err });
    if (status === 429) return retryable(Failure.ModelRateLimit);
    if (status === 529 || apiType === 'overloaded_error') return retryable(Failure.ModelOverloaded);
    if (status === 408) return retryable(Failure.ModelTimeout);
    if (status === 409) return retryable(Failure.ModelConflict);
    if (status >= 500) return retryable(Failure.ModelServerError);
    if (status === 401) return fatal(Failure.ModelAuthentication);
    if (status === 403) return fatal(Failure.ModelPermissionDenied);
    if (status === 404) return fatal(Failure.ModelNotFound);
    if (status === 413) return fatal(Failure.ModelRequestTooLarge);
    if (/prompt is too long/i.test(message)) return fatal(Failure.ModelPromptTooLong);
    return fatal(Failure.ModelBadRequest);
  }
  if (err instanceof Anthropic.APIConnectionTimeoutError)
    return ApplicationFailure.retryable(`model API timed out: ${err.message}`, Failure.ModelTimeout);
  const message = err instanceof Error ? err.message : String(err);
  if (/not valid JSON|Unexpected token|JSON at position/i.test(message))
    return ApplicationFailure.retryable(`model reply could not be read: ${message}`, Failure.ModelInvalidResponse);
  return ApplicationFailure.retryable(`model API connection failed: ${message}`, Failure.ModelConnection);
}

function toUsage(u: Anthropic.Messages.Usage): Usage {
  return {
    input_tokens: u.input_tokens ?? 0,
    output_tokens: u.output_tokens ?? 0,
    cache_creation_input_tokens: u.cache_creation_input_tokens ?? 0,
    cache_read_input_tokens: u.cache_read_input_tokens ?? 0,
  };
}

function toBlocks(content: Anthropic.Messages.ContentBlock[]): ModelBlock[] {
  const out: ModelBlock[] = [];
  for (const b of content) {
    if (b.type === 'text') out.push({ type: 'text', text: b.text });
    else if (b.type === 'thinking') out.push({ type: 'thinking', thinking: b.thinking, signature: b.signature });
    else if (b.type === 'redacted_thinking') out.push({ type: 'redacted_thinking', data: b.data });
    else if (b.type === 'tool_use')
      out.push({ type: 'tool_use', id: b.id, name: b.name, input: (b.input ?? {}) as Record<string, unknown> });
  }
  return out;
}

/** Dependencies of the model activity. */
export interface ModelDeps {
  anthropic: Anthropic;
  temporal: Client;
  /** A stream that sends nothing for this long is abandoned as `Model.Timeout` (and retried). Default 90 s. */
  stallMs?: number;
  /** The worker's cache of session logs; default: one of its own over `temporal`. */
  logCache?: SessionLogCache;
  /** Runs a built-in tool in a sandbox (the grader's read-only look at the work). */
  runTool?: (input: ExecuteInput) => Promise<ExecuteResult>;
  /** The worker's MCP client side: lists the agent's MCP tools for the model. */
  mcp?: McpHub;
  /** The file store: images and documents that user messages name by file id are read from it into requests. */
  files?: FileStore;
}

/** Text beyond this many characters in one block is cut (head and tail kept): history events must stay small. */
export const MAX_TEXT_BLOCK = 200_000;
/** A tool call whose input JSON is larger than this is replaced by a note, and the tool reports the error. */
export const MAX_TOOL_INPUT = 256 * 1024;

/** Bounds what a model reply may put into history (DESIGN rule 10 for the model's side). */
export function boundBlocks(blocks: ModelBlock[]): ModelBlock[] {
  return blocks.map((b) => {
    if (b.type === 'text' && b.text.length > MAX_TEXT_BLOCK) {
      const omitted = b.text.length - MAX_TEXT_BLOCK;
      const head = b.text.slice(0, MAX_TEXT_BLOCK / 2);
      const tail = b.text.slice(b.text.length - MAX_TEXT_BLOCK / 2);
      return { type: 'text', text: `${head}\n[... ${omitted} characters of this reply omitted by Tandem ...]\n${tail}` };
    }
    if (b.type === 'tool_use') {
      const size = JSON.stringify(b.input).length;
      if (size > MAX_TOOL_INPUT)
        return { ...b, input: { tandem_error: `the tool input was ${size} bytes; at most ${MAX_TOOL_INPUT} are accepted` } };
    }
    return b;
  });
}

/**
 * Runs model work in an activity: heartbeats every 2 s (which carries cancellation), and turns what it throws into
 * a cancellation when the activity was cancelled, or else into a typed model failure.
 */
async function modelWork<T>(ctx: Context, what: string, fn: () => Promise<T>): Promise<T> {
  const beat = setInterval(() => ctx.heartbeat({ phase: what }), 2000);
  try {
    return await fn();
  } catch (err) {
    if (ctx.cancellationSignal.aborted) throw new CancelledFailure(`${what} cancelled`);
    if (err instanceof ApplicationFailure) throw err;
    throw translateModelError(err);
  } finally {
    clearInterval(beat);
  }
}

/** Creates `callModel`. */
export function createModelActivities({ anthropic, temporal, logCache, stallMs = 90_000, runTool, mcp, files }: ModelDeps) {
  const logs = logCache ?? new SessionLogCache(temporal);
  /**
   * The session log as this activity's workflow saw it: everything before the activity was scheduled (the
   * workflow's cursor plus whatever the same workflow task recorded just before scheduling it). Read through the
   * worker's cache, so a later call of the same run fetches only the events written since.
   */
  function logBefore(ctx: Context, input: { session_id: string; run_id: string; cursor: number }, activity: ActivityName) {
    const { activityId } = ctx.info;
    return logs.readBefore(
      input.session_id,
      input.run_id,
      (e) =>
        e.activityTaskScheduledEventAttributes?.activityId === activityId &&
        e.activityTaskScheduledEventAttributes.activityType?.name === activity &&
        Number(e.eventId) > input.cursor,
    );
  }

  /** Builds the context from the log up to `cursor` and streams one model call. */
  async function callModel(input: CallModelInput): Promise<CallModelResult> {
    const ctx = Context.current();
    const started = Date.now(); // time to first token counts reading the log and building the context
    const log = await logBefore(ctx, input, ActivityNames.callModel);
    const input0 = log.input;
    if (!input0) throw ApplicationFailure.nonRetryable('session log has no input', Failure.LogInvalid);
    const agent = input0.agent;
    const budgetTokens = { ...agent.limits, ...input0.limits }.context_tokens;
    return modelWork(ctx, 'model call', async () => {
      // MCP tools sit next to the built-in ones; a missing secret fails here (Vault.SecretMissing, not retryable).
      let offer: McpOffer | undefined;
      if (mcp && (agent.mcp_servers?.length ?? 0) > 0) {
        offer = await mcp.offer(agent, toolDefinitions(agent, builtinDefinitions).map((t) => t.name));
      }
      const mcpOptions = {
        extraTools: offer?.definitions ?? [],
        notes: (offer?.unavailable ?? []).map(
          (u) => `MCP server "${u.server}" is unavailable, so its tools are not offered in this call: ${u.message}`,
        ),
      };
      const options = { budgetTokens, ...mcpOptions, ...(input0.skills?.length ? { skills: input0.skills } : {}) };
      let built = buildRequest(agent, log.events, builtinDefinitions, options);
      let compaction: CallModelResult['compaction'];
      let extraUsage: Usage | undefined;
      if (built.compact) {
        // Over budget even after trimming tool results: summarise the older turns, then build again.
        const summary = await stream(summaryRequest(agent, built.compact.head), ctx);
        const text = summary.message.content.map((b) => (b.type === 'text' ? b.text : '')).join('').trim();
        const tokensBefore = estimateTokens(built.request);
        const trimmed = built.trimmed;
        const kept = { summary: text, first_kept_id: built.compact.first_kept_id };
        built = buildRequest(agent, log.events, builtinDefinitions, { ...options, compaction: kept });
        compaction = { ...kept, tokens_before: tokensBefore, tokens_after: estimateTokens(built.request), trimmed_tool_results: trimmed };
        extraUsage = toUsage(summary.message.usage);
      }
      await inlineFiles(built.request.messages, files);
      const callStarted = Date.now();
      const { message, ttft } = await stream(built.request, ctx);
      const usage = toUsage(message.usage);
      if (extraUsage) for (const k of Object.keys(usage) as Array<keyof Usage>) usage[k] += extraUsage[k];
      // Priced by the model asked for (the summary's too): that is the model a budget was checked against.
      const listCost = costMicros(built.request.model, usage);
      return {
        message_id: message.id,
        model: message.model,
        content: annotateMcpUses(boundBlocks(toBlocks(message.content)), offer?.routes ?? new Map()),
        stop_reason: message.stop_reason,
        usage,
        started_at: new Date(started).toISOString(),
        ttft_ms: ttft === null ? null : ttft + (callStarted - started),
        duration_ms: Date.now() - started,
        ...(compaction ? { compaction } : {}),
        ...(listCost !== undefined ? { list_cost_micros: listCost } : {}),
      };
    });
  }

  /**
   * Streams one request, heartbeating per chunk; returns the final message and the time to its first token. A
   * stream that stays silent for `stallMs` is abandoned with a retryable `Model.Timeout`.
   */
  async function stream(request: ModelRequest, ctx: Context): Promise<{ message: Anthropic.Messages.Message; ttft: number | null }> {
    const started = Date.now();
    let ttft: number | null = null;
    const abort = new AbortController();
    const onCancel = () => abort.abort();
    ctx.cancellationSignal.addEventListener('abort', onCancel);
    let stalled = false;
    let watchdog: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        stalled = true;
        abort.abort();
      }, stallMs);
    };
    try {
      arm();
      ctx.heartbeat({ phase: 'request' });
      const s = anthropic.messages.stream(request as Anthropic.Messages.MessageStreamParams, { signal: abort.signal });
      s.on('streamEvent', (event) => {
        if (ttft === null && event.type === 'content_block_delta') ttft = Date.now() - started;
        arm();
        ctx.heartbeat({ phase: 'streaming' });
      });
      return { message: await s.finalMessage(), ttft };
    } catch (err) {
      if (stalled) {
        throw ApplicationFailure.retryable(`model API sent nothing for ${Math.round(stallMs / 1000)} s`, Failure.ModelTimeout);
      }
      throw err;
    } finally {
      clearTimeout(watchdog);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
    }
  }
  /**
   * One evaluation of an outcome: a grader with its own context (the outcome, the rubric and the session so far)
   * that may look at the sandbox with read-only tools, and answers with a verdict.
   */
  async function gradeOutcome(input: GradeOutcomeInput): Promise<GradeOutcomeResult> {
    const ctx = Context.current();
    const log = await logBefore(ctx, input, ActivityNames.gradeOutcome);
    const agent = log.input?.agent;
    if (!agent) throw ApplicationFailure.nonRetryable('session log has no input', Failure.LogInvalid);
    const sandbox = runTool ? input.sandbox : undefined;
    const request = graderRequest(agent, input.outcome, log.events, graderTools(builtinDefinitions, !!sandbox));
    const usage: Usage = { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
    let model = request.model;
    const priced = (r: Omit<GradeOutcomeResult, 'list_cost_micros'>): GradeOutcomeResult => {
      const listCost = costMicros(request.model, r.usage);
      return listCost === undefined ? r : { ...r, list_cost_micros: listCost };
    };
    return modelWork(ctx, 'evaluation', async () => {
      for (let call = 0; call < MAX_GRADER_CALLS; call++) {
        const { message } = await stream(request, ctx);
        model = message.model;
        const u = toUsage(message.usage);
        for (const k of Object.keys(usage) as Array<keyof Usage>) usage[k] += u[k];
        const blocks = toBlocks(message.content);
        request.messages.push({ role: 'assistant', content: blocks });
        const uses = blocks.filter((b): b is Extract<ModelBlock, { type: 'tool_use' }> => b.type === 'tool_use');
        const verdict = uses.find((b) => b.name === VERDICT_TOOL);
        if (verdict) {
          const result = verdict.input.result as GradeOutcomeResult['result'];
          const explanation = typeof verdict.input.explanation === 'string' ? verdict.input.explanation : '';
          if (!GRADER_VERDICTS.includes(result))
            return priced({ result: 'failed', explanation: `The grader gave an unknown verdict ${JSON.stringify(result)}.`, usage, model });
          return priced({ result, explanation, usage, model });
        }
        if (uses.length === 0) {
          request.messages.push({ role: 'user', content: [{ type: 'text', text: `Call ${VERDICT_TOOL} now with your verdict.` }] });
          continue;
        }
        const results = [];
        for (const use of uses) {
          const allowed = sandbox && (GRADER_TOOLS as readonly string[]).includes(use.name);
          const r = allowed
            ? await runTool!({ sandbox, tool_use_id: `grader-${use.id}`, name: use.name, input: use.input }).catch(
                (err: unknown) => ({ content: `The tool failed: ${(err as Error).message}`, is_error: true }),
              )
            : { content: `The grader may use only ${[...(sandbox ? GRADER_TOOLS : []), VERDICT_TOOL].join(', ')}.`, is_error: true };
          results.push({ type: 'tool_result' as const, tool_use_id: use.id, content: r.content, is_error: r.is_error });
        }
        request.messages.push({ role: 'user', content: results });
      }
      return priced({ result: 'failed', explanation: `The grader gave no verdict in ${MAX_GRADER_CALLS} model calls.`, usage, model });
    });
  }

  return { callModel, gradeOutcome };
}
