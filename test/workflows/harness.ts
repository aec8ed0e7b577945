/**
 * Fast workflow tests of the session's parts: the real `agentSession` workflow on the run's dev server, with every
 * activity stubbed in this process (no Docker, no model server). A scripted model answers per session, the hands
 * record what they were asked, and hands hosts are workers on their own task queues that a test may stop.
 */
import { randomUUID } from 'node:crypto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, inject } from 'vitest';
import { hostQueue, placementQueue, SESSION_WORKFLOW } from '../../src/shared/names.js';
import type {
  CallModelResult,
  ExecuteInput,
  ExecuteResult,
  GradeOutcomeResult,
  ModelBlock,
  PlaceSandboxInput,
  ProvisionInput,
  ProvisionResult,
  SessionInput,
  SnapshotResult,
} from '../../src/shared/types.js';
import { workflowBundle } from '../helpers/env.js';

const usage = { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };

/** A model reply: text, tool calls, or both (`stop_reason` is `tool_use` when it has calls). */
export function modelReply(...blocks: Array<string | ModelBlock>): CallModelResult {
  const content = blocks.map((b): ModelBlock => (typeof b === 'string' ? { type: 'text', text: b } : b));
  return {
    message_id: `msg_${randomUUID().slice(0, 8)}`,
    model: 'claude-test',
    content,
    stop_reason: content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn',
    usage,
    started_at: new Date().toISOString(),
    ttft_ms: 1,
    duration_ms: 1,
  };
}

/** A tool call block. */
export function call(name: string, input: Record<string, unknown>, id = `toolu_${randomUUID().slice(0, 8)}`): ModelBlock {
  return { type: 'tool_use', id, name, input };
}

/** What the stubbed activities were asked, in order. */
export interface Calls {
  model: string[];
  place: PlaceSandboxInput[];
  provision: Array<ProvisionInput & { host: string }>;
  execute: Array<ExecuteInput & { host: string }>;
  snapshot: string[];
  grade: string[];
}

export interface StubHarness {
  env: TestWorkflowEnvironment;
  taskQueue: string;
  calls: Calls;
  /** Replies of the scripted model, by session id (a child's id is `<parent>.<tool_use_id>`). */
  script: Map<string, CallModelResult[]>;
  /** Verdicts the grader gives, in order. */
  verdicts: GradeOutcomeResult['result'][];
  /** The hands hosts `placeSandbox` chooses from, in order of preference (it skips excluded ones). */
  hosts: string[];
  /** Starts a hands host: a worker on its own queue that serves the sandbox activities. */
  startHost(id: string): Promise<void>;
  /** Stops a hands host's worker: its queue then has no poller. */
  stopHost(id: string): Promise<void>;
  /**
   * Starts a session (with a first user message unless `message` is undefined) and the scripts of its model and of
   * its sub-agents' (by the delegating call's id).
   */
  start(
    input: Omit<SessionInput, 'initial_events'>,
    message: string | undefined,
    replies: CallModelResult[],
    children?: Record<string, CallModelResult[]>,
  ): Promise<WorkflowHandle>;
}

/** Sets up the harness for a test file: the brain's worker, the placement worker and hands host `h1`. */
export function useStubHarness(): StubHarness {
  const workers = new Map<string, { worker: Worker; done: Promise<void> }>();
  const started: WorkflowHandle[] = [];
  const h = {
    taskQueue: `wf-${randomUUID().slice(0, 8)}`,
    calls: { model: [], place: [], provision: [], execute: [], snapshot: [], grade: [] } as Calls,
    script: new Map<string, CallModelResult[]>(),
    verdicts: [] as GradeOutcomeResult['result'][],
    hosts: ['h1'],
  } as StubHarness;

  let snapshots = 0;
  const sandbox = (host: string, sessionId: string) => ({
    name: `sbx-${sessionId}`,
    container_id: `c-${host}-${sessionId}`,
    image: 'stub',
    volume: `v-${sessionId}`,
    state: 'running' as const,
  });
  const takeSnapshot = (): SnapshotResult => ({
    snapshot_id: `snap-${++snapshots}`.padEnd(16, '0'),
    changed: true,
    files: 1,
    bytes: 1,
    written_bytes: 1,
    duration_ms: 1,
  });
  const handsActivities = (host: string) => ({
    async provision(input: ProvisionInput): Promise<ProvisionResult> {
      h.calls.provision.push({ ...input, host });
      return { sandbox: sandbox(host, input.session_id), duration_ms: 1 };
    },
    async execute(input: ExecuteInput): Promise<ExecuteResult> {
      h.calls.execute.push({ ...input, host });
      return {
        content: `${input.notice ? `${input.notice}\n` : ''}ran ${input.name} on ${host}`,
        is_error: false,
        truncated: false,
        container_id: `c-${host}`,
        duration_ms: 1,
        ...(input.snapshot ? { snapshot: takeSnapshot() } : {}),
      };
    },
    async snapshotSandbox(input: { session_id: string }): Promise<SnapshotResult> {
      h.calls.snapshot.push(input.session_id);
      return takeSnapshot();
    },
    async stopSandbox(): Promise<void> {},
    async removeSandbox(): Promise<void> {},
  });
  const brainActivities = {
    async callModel(input: { session_id: string }): Promise<CallModelResult> {
      h.calls.model.push(input.session_id);
      const next = h.script.get(input.session_id)?.shift();
      if (!next) throw new Error(`the scripted model has no reply left for ${input.session_id}`);
      return next;
    },
    async gradeOutcome(input: { session_id: string }): Promise<GradeOutcomeResult> {
      h.calls.grade.push(input.session_id);
      const result = h.verdicts.shift() ?? 'satisfied';
      return { result, explanation: `graded ${result}`, usage, model: 'claude-test' };
    },
    async placeSandbox(input: PlaceSandboxInput) {
      h.calls.place.push(input);
      const host = h.hosts.find((id) => !input.exclude?.includes(id));
      if (!host) throw new Error('no hands host left');
      return { host_id: host, task_queue: hostQueue(h.taskQueue, host) };
    },
  };

  const run = async (key: string, options: Parameters<typeof Worker.create>[0]) => {
    const worker = await Worker.create(options);
    workers.set(key, { worker, done: worker.run() });
  };
  h.startHost = (id) =>
    run(id, { connection: h.env.nativeConnection, taskQueue: hostQueue(h.taskQueue, id), activities: handsActivities(id) });
  h.stopHost = async (id) => {
    const w = workers.get(id);
    workers.delete(id);
    w?.worker.shutdown();
    await w?.done;
  };
  h.start = async (input, message, replies, children = {}) => {
    const workflowId = `sesn_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    h.script.set(workflowId, replies);
    for (const [toolUseId, childReplies] of Object.entries(children)) h.script.set(`${workflowId}.${toolUseId}`, childReplies);
    const sessionInput: SessionInput = { ...input, ...(message ? { initial_events: [{ content: [{ type: 'text', text: message }] }] } : {}) };
    const handle = await h.env.client.workflow.start(SESSION_WORKFLOW, { taskQueue: h.taskQueue, workflowId, args: [sessionInput] });
    started.push(handle);
    return handle;
  };

  beforeAll(async () => {
    h.env = await TestWorkflowEnvironment.createFromExistingServer({ address: inject('temporalAddress') });
    const connection = h.env.nativeConnection;
    await run('brain', { connection, taskQueue: h.taskQueue, workflowBundle: await workflowBundle(), activities: brainActivities });
    await run('placement', { connection, taskQueue: placementQueue(h.taskQueue), activities: brainActivities });
    await h.startHost('h1');
  });
  afterAll(async () => {
    for (const handle of started) await handle.terminate('test done').catch(() => undefined);
    for (const id of [...workers.keys()]) await h.stopHost(id);
    await h.env?.teardown();
  });
  return h;
}
