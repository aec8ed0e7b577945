/**
 * The session's hands: where its sandbox runs, running a tool call there, moving the sandbox off a hands host that
 * stopped answering, and the workspace snapshot after each tool turn. Sessions on hands hosts place the sandbox on a
 * host and send every later call to that host's own task queue; sessions begun before that keep the sandbox on the
 * session's task queue.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  patched,
  proxyActivities,
  TimeoutFailure,
  workflowInfo,
} from '@temporalio/workflow';
import { Failure } from '../../shared/failures.js';
import { placementQueue } from '../../shared/names.js';
import { sessionResources } from '../../shared/repositories.js';
import type { Placement, SandboxRef } from '../../shared/types.js';
import type { Activities } from '../../activities/index.js';
import { mcpRoute } from '../mcp.js';
import { toolSummary } from '../summaries.js';
import type { Acts, SessionCore, ToolUse } from './core.js';

/**
 * Patch: the sandbox is placed on a hands host and every call for it goes to that host's task queue; the workspace
 * is snapshotted after each tool turn, and a host that stops answering gets the sandbox placed again elsewhere,
 * restored from the latest snapshot.
 */
const HANDS_HOSTS = 'hands-hosts';
/**
 * Patch: a tool turn's snapshot is taken by its last call's `execute`, after the call, instead of by a
 * `snapshotSandbox` activity of its own (which stays for turns that end otherwise, and when that snapshot failed).
 */
const SNAPSHOT_WITH_CALL = 'snapshot-with-call';
/** Times one tool call may move its sandbox to another host before it is a tool error. */
const MAX_MOVES = 3;

/** The tool error of a call whose sandbox could not be provisioned. */
export const provisionFailed = (f: ActivityFailure) => `The sandbox could not be provisioned: ${f.cause?.message ?? f.message}`;

export class Hands {
  /** The session's sandbox as the activities take it (without its placement). */
  readonly sandboxRef: SandboxRef;
  /** Whether the session's sandbox runs on a hands host (sessions from the `hands-hosts` patch on). */
  readonly onHosts: boolean;
  private readonly snapshotWithCall: boolean;
  /** Whether a builtin tool ran since the last snapshot. */
  private touched = false;
  /** This run is a rewind's (a reset keeps the first run's id on its start event and gets a new one). */
  private readonly rewound: boolean;
  private readonly placement: Acts;

  constructor(private readonly s: SessionCore) {
    const { input, info, state, ownsSandbox } = s;
    const resources = sessionResources(input);
    // A sub-agent in its parent's sandbox leaves the parent's files as they are (the parent's calls write them).
    const { files: _parentFiles, ...shared } = input.delegation?.sandbox ?? {};
    this.sandboxRef = input.delegation?.sandbox ? (shared as SandboxRef) : {
      session_id: info.workflowId,
      config: { ...input.agent.sandbox, ...input.sandbox },
      ...(resources.length > 0 ? { resources } : {}),
    };
    this.placement = proxyActivities<Activities>({
      taskQueue: placementQueue(info.taskQueue),
      startToCloseTimeout: '1 minute',
      retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 30 },
    });
    // A session begun before hands hosts keeps the sandbox it has on the task queue (its later runs too), and so
    // does a child sharing such a sandbox.
    const legacySandbox = ownsSandbox
      ? state.sandboxes.length > 0 && !state.sandboxes[0]!.task_queue
      : !input.delegation?.sandbox?.placement;
    this.onHosts = !legacySandbox && patched(HANDS_HOSTS);
    this.snapshotWithCall = this.onHosts && ownsSandbox && patched(SNAPSHOT_WITH_CALL);
    this.rewound = info.runId !== info.originalExecutionRunId;
  }

  /** The hands activities of the host a sandbox is placed on (its own queue; a host that stops answering times out). */
  private onHost(taskQueue: string): Acts {
    return proxyActivities<Activities>({
      taskQueue,
      startToCloseTimeout: '15 minutes',
      // No poller on the host's queue this long, or no heartbeat from a started call (they beat every 2 s): the
      // host is lost. A false alarm on a busy host costs a move to another host, never a result.
      scheduleToStartTimeout: '4 seconds',
      heartbeatTimeout: '5 seconds',
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: this.s.limits.tool_attempts ?? 3 },
    });
  }

  /** Snapshots, idle stops and removals on a host: they may find it gone, and then give up. */
  private onHostHousekeeping(taskQueue: string): Acts {
    return proxyActivities<Activities>({
      taskQueue,
      startToCloseTimeout: '5 minutes',
      scheduleToStartTimeout: '30 seconds',
      heartbeatTimeout: '30 seconds',
      retry: { initialInterval: '1 second', maximumAttempts: 3 },
    });
  }

  /** Where this session's sandbox runs, when it runs on a hands host: its own, or its parent's when shared. */
  placed(): Placement | undefined {
    const sb = this.s.state.sandboxes[0];
    if (sb?.host && sb.task_queue) return { host_id: sb.host, task_queue: sb.task_queue };
    return this.s.input.delegation?.sandbox?.placement;
  }

  /** The sandbox reference with its placement when it has one, as the activities take it. */
  ref(): SandboxRef {
    const p = this.placed();
    return p ? this.refOn(p) : this.sandboxRef;
  }

  private refOn(p: Placement): SandboxRef {
    // The sandbox's own session says which files it holds (none is a list too: its outputs are published).
    const { ownsSandbox, state, input } = this.s;
    return {
      ...this.sandboxRef,
      placement: p,
      ...(ownsSandbox ? { files: state.files ?? [] } : {}),
      ...(ownsSandbox && input.skills?.length ? { skills: input.skills } : {}),
    };
  }

  /**
   * After a rewind, the first tool call sets the workspace back to the latest snapshot as of the rewind point (or
   * empties it when there was none), so the files agree with the log. What the call does is in its activity's
   * input only, decided when the call is made live (never while the history from before the rewind replays: that
   * input was another then, and a replay does not compare inputs); that it happened comes back in its result, so
   * every replay of this run knows it.
   */
  private rewindNow(): { snapshot_id: string | null } | undefined {
    const { state, info, ownsSandbox } = this.s;
    return this.onHosts && ownsSandbox && this.rewound && state.rewound_run !== info.runId && !workflowInfo().unsafe.isReplaying
      ? { snapshot_id: state.snapshot?.snapshot_id ?? null }
      : undefined;
  }

  async ensureSandbox(): Promise<void> {
    const { state, info, ownsSandbox, input } = this.s;
    if (state.sandboxes.length > 0) return;
    if (!this.onHosts) {
      const { sandbox } = await this.s.interruptible(() => this.s.hands.provision(this.sandboxRef));
      state.sandboxes = [sandbox];
      return;
    }
    // A child that shares its parent's sandbox uses it where it is; otherwise the sandbox is placed (again), on a
    // host other than those that stopped answering, and a workspace new to its host gets the latest snapshot.
    const shared = ownsSandbox ? undefined : input.delegation?.sandbox?.placement;
    const config = this.sandboxRef.config;
    const where =
      shared ??
      (await this.s.interruptible(() =>
        this.placement.placeSandbox({
          session_id: this.sandboxRef.session_id,
          ...(config.image ? { image: config.image } : {}),
          ...(state.lost_hosts?.length ? { exclude: state.lost_hosts } : {}),
        }),
      ));
    const rewind = this.rewindNow();
    const restore = ownsSandbox && state.snapshot ? { restore: state.snapshot.snapshot_id } : {};
    try {
      const result = await this.s.interruptible(() =>
        this.onHost(where.task_queue).provision({ ...this.refOn(where), ...restore, ...(rewind ? { wipe: true } : {}) }),
      );
      if (result.wiped) state.rewound_run = info.runId;
      state.sandboxes = [{ ...result.sandbox, host: where.host_id, task_queue: where.task_queue }];
    } catch (err) {
      // A host that took no provision is not placed on again by this session.
      if (ownsSandbox && err instanceof ActivityFailure && err.cause instanceof TimeoutFailure) this.markLost(where.host_id);
      throw err;
    }
  }

  private markLost(hostId: string): void {
    const state = this.s.state;
    state.lost_hosts = [...new Set([...(state.lost_hosts ?? []), hostId])].slice(-8);
  }

  /** Removes the session's sandbox (the session has ended); a host that is gone keeps it until its reaper runs. */
  async removeSandbox(): Promise<void> {
    const where = this.placed();
    if (!this.onHosts || !where) return this.s.housekeeping.removeSandbox(this.sandboxRef);
    await this.onHostHousekeeping(where.task_queue).removeSandbox(this.refOn(where)).catch(() => undefined);
  }

  /** Stops the idle session's container (it comes back on the next tool call). */
  async stopSandbox(): Promise<void> {
    const where = this.placed();
    if (!this.onHosts || !where) return this.s.housekeeping.stopSandbox(this.sandboxRef);
    await this.onHostHousekeeping(where.task_queue).stopSandbox(this.refOn(where)).catch(() => undefined);
  }

  /** Whether a step failed because its hands host stopped answering (its queue or its heartbeats timed out). */
  private hostLost(f: ActivityFailure): boolean {
    return this.onHosts && f.cause instanceof TimeoutFailure;
  }

  /**
   * Gives up the sandbox of a host that stopped answering: it is placed elsewhere next, and the old host, should it
   * come back, removes what it held (without ending the session's snapshots).
   */
  private moveOff(): string | undefined {
    const p = this.placed();
    if (!p || !this.s.ownsSandbox) return undefined;
    this.markLost(p.host_id);
    this.s.state.sandboxes = [];
    this.onHostHousekeeping(p.task_queue)
      .removeSandbox({ ...this.refOn(p), moved: true })
      .catch(() => undefined);
    const snap = this.s.state.snapshot;
    return (
      `[Tandem: this call runs in a new sandbox, because hands host ${p.host_id} stopped answering. ` +
      (snap
        ? `The workspace is as it was at its latest snapshot (${snap.snapshot_id.slice(0, 12)}, ${snap.at}); changes made after it are gone.]`
        : 'The session had no snapshot yet, so the workspace is empty.]')
    );
  }

  /**
   * Runs one built-in or MCP tool call; a failure after the retry budget becomes a tool error the model sees. With
   * `snapshot`, the call's host snapshots the workspace after it (sessions on hands hosts).
   */
  async runTool(use: ToolUse, snapshot = false): Promise<void> {
    const s = this.s;
    const mcp = mcpRoute(s.input.agent, s.info.workflowId, use);
    if (mcp) {
      // MCP tools run on the worker, with the vault's credentials: no sandbox is needed or told anything.
      try {
        await s.interruptible(() => s.hands.callMcpTool(mcp.call));
      } catch (err) {
        s.stepFailure(err); // the decoder shows the failure as an agent.mcp_tool_result
      }
      return;
    }
    if (this.onHosts) return this.runOnHost(use, snapshot);
    try {
      await this.ensureSandbox();
    } catch (err) {
      const failure = s.stepFailure(err);
      if (failure) s.toolError(use, provisionFailed(failure));
      return;
    }
    try {
      const summary = toolSummary(use.name, use.input);
      s.details.step(summary);
      const result = await s.interruptible(() =>
        s.hands.execute.executeWithOptions({ summary }, [
          { sandbox: this.sandboxRef, tool_use_id: use.id, name: use.name, input: use.input },
        ]),
      );
      if (result.provisioned) s.state.sandboxes = [result.provisioned];
    } catch (err) {
      // The log decoder turns the failed activity into an `agent.tool_result` with `is_error`.
      const cause = s.stepFailure(err)?.cause;
      if (cause instanceof ApplicationFailure && cause.type === Failure.SandboxLost) s.state.sandboxes = [];
    }
  }

  /**
   * Runs one built-in tool call on the sandbox's hands host. A host that stops answering (a timeout on its queue:
   * the log decoder shows it as `sandbox.lost`, not as the call's result) gets the sandbox placed again and the call
   * run there, with a note for the model; after MAX_MOVES the call is a tool error.
   */
  private async runOnHost(use: ToolUse, snapshot: boolean): Promise<void> {
    const s = this.s;
    let notice: string | undefined;
    for (let moves = 0; ; moves++) {
      try {
        await this.ensureSandbox();
      } catch (err) {
        const failure = s.stepFailure(err);
        if (!failure) return;
        if (this.hostLost(failure) && moves < MAX_MOVES) {
          notice = this.moveOff() ?? notice;
          continue;
        }
        return s.toolError(use, provisionFailed(failure));
      }
      const where = this.placed()!;
      try {
        const summary = toolSummary(use.name, use.input);
        s.details.step(summary);
        const rewind = this.rewindNow();
        const call = {
          sandbox: this.refOn(where),
          tool_use_id: use.id,
          name: use.name,
          input: use.input,
          ...(notice ? { notice } : {}),
          ...(rewind ? { rewind } : {}),
          ...(snapshot ? { snapshot: true as const } : {}),
        };
        const result = await s.interruptible(() => this.onHost(where.task_queue).execute.executeWithOptions({ summary }, [call]));
        if (result.provisioned) s.state.sandboxes = [{ ...result.provisioned, host: where.host_id, task_queue: where.task_queue }];
        if (result.wiped) s.state.rewound_run = s.info.runId;
        // A snapshot taken after this call covers it and every call before it.
        this.touched = !result.snapshot;
        if (result.snapshot?.changed) s.state.snapshot = { snapshot_id: result.snapshot.snapshot_id, at: new Date().toISOString() };
        return;
      } catch (err) {
        const failure = s.stepFailure(err);
        if (!failure) return;
        if (this.hostLost(failure)) {
          if (moves < MAX_MOVES && s.ownsSandbox) {
            notice = this.moveOff() ?? notice;
            continue;
          }
          return s.toolError(use, `The sandbox's hands host stopped answering (${failure.cause?.message ?? failure.message}), ${moves + 1} time(s).`);
        }
        // Any other failure is the call's result in the log (the decoder shows it as a tool error).
        const cause = failure.cause;
        if (cause instanceof ApplicationFailure && cause.type === Failure.SandboxLost) s.state.sandboxes = [];
        return;
      }
    }
  }

  /**
   * The call of a turn after which its snapshot is taken, in that call's `execute`: the last built-in call that runs
   * at once, when nothing of the turn runs after the calls (a delegation, or a call that waits for the user).
   */
  snapshotCall(uses: ToolUse[]): ToolUse | undefined {
    const s = this.s;
    if (!this.snapshotWithCall || s.state.replay) return undefined;
    let last: ToolUse | undefined;
    for (const use of uses) {
      if (typeof use.input.tandem_error === 'string') continue;
      const mcp = mcpRoute(s.input.agent, s.info.workflowId, use);
      const tool = s.tools.get(use.name);
      if (mcp) {
        if (mcp.ask) return undefined;
      } else if (tool?.kind === 'builtin' && !tool.ask) last = use;
      else if (tool) return undefined;
    }
    return last;
  }

  /**
   * Snapshots the workspace after a tool turn that ran a built-in tool (sessions on hands hosts that own their
   * sandbox), so the files outlive the host. A host that does not answer costs the snapshot, not the turn.
   */
  async snapshotTurn(): Promise<void> {
    const s = this.s;
    const where = this.placed();
    if (!this.onHosts || !this.touched || !s.ownsSandbox || !where || s.state.sandboxes.length === 0) return;
    this.touched = false;
    try {
      const r = await this.onHostHousekeeping(where.task_queue).snapshotSandbox(this.refOn(where));
      if (r.changed) s.state.snapshot = { snapshot_id: r.snapshot_id, at: new Date().toISOString() };
    } catch (err) {
      if (s.sessionCancelled(err)) throw err;
      if (!(err instanceof ActivityFailure)) throw err;
    }
  }
}
