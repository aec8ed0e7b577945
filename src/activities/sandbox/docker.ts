/**
 * The hands: disposable, hardened Docker containers behind `provision` and `execute`. Containers are cattle: their
 * names and labels derive from the session ID (and the deployment's scope), so any attempt on any worker of the host
 * can find, reuse or replace them. Each sandbox has a slot on the host (slot.ts): its workspace and a read-only
 * control directory where this process listens for the toolbox (channel.ts), so a tool call is one message on a
 * line that is already open, never a `docker exec`. Whatever comes back on that line is bounded and checked, and a
 * sandbox that answers wrongly is replaced like a lost one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import { Failure } from '../../shared/failures.js';
import { repositoryPath } from '../../shared/repositories.js';
import type {
  ExecuteInput,
  ExecuteResult,
  PlaceSandboxInput,
  Placement,
  ProvisionInput,
  ProvisionResult,
  SandboxConfig,
  SandboxInfo,
  SandboxRef,
  SnapshotResult,
} from '../../shared/types.js';
import { dockerBoundary, dockerStatus, fromDocker, handsRefused, provisionFailed, resourceFailed, sandboxLost } from './failures.js';
import { ChannelClosed, ToolboxChannels, type ToolboxLine } from './channel.js';
import type { HostRegistry } from './hosts.js';
import type { Snapshots } from './snapshots.js';
import { needsGateway, remoteUrl, usesEgress, type Gateway, type GatewayMount } from './gateway.js';
import {
  DEFAULT_DISK_MB,
  HOST_MOUNT,
  listSlots,
  OUTPUTS_MOUNT,
  SKILLS_MOUNT,
  UPLOADS_MOUNT,
  removeSlotDir,
  sandboxOwner,
  slotKey,
  Slots,
  type SandboxOwner,
  type Slot,
  type SlotMeta,
  type WorkspaceMode,
} from './slot.js';
import { WarmPool, type WarmEntry } from './warm.js';
import { SessionFilesOnHost } from './session-files.js';
import type { FileStore } from '../../files/store.js';
import type { SkillStore } from '../../files/skills.js';

/** Label on every container and volume Tandem creates. */
export const LABEL_MANAGED = 'tandem.managed';
/** Label holding the session ID. */
export const LABEL_SESSION = 'tandem.session';
/** Label naming the deployment (Temporal namespace and address) whose sessions own the sandbox. */
export const LABEL_SCOPE = 'tandem.scope';

const TOOLBOX = ['node', '/opt/tandem/toolbox.mjs'];
/** The toolbox's own tmpfs: the full output of truncated results. */
const RUN_DIR = '/run/tandem';
const SANDBOX_USER = '1000:1000';
/** Where the toolbox may say a truncated result's full output is. */
const OUTPUTS_DIR = `${RUN_DIR}/outputs/`;
/**
 * How long a new container's toolbox has to dial this process while the container runs: a loaded engine can take
 * tens of seconds to start one (50 at once on 2 busy cores took over 20 s). A container that stops is given up at once.
 */
const TOOLBOX_START_MS = 90_000;
/** How long a running container's toolbox has to dial a process that has not heard from it yet (it rescans every 2 s). */
const TOOLBOX_REDIAL_MS = 5_000;
/** A toolbox that does not answer a ping for this long while a call runs is mute, and its sandbox is replaced. */
const PING_TIMEOUT_MS = 15_000;
/** Open files per sandbox process. */
const NOFILE = 4096;
/** Docker keeps at most this much of a container's own output (the toolbox's log; anything written to its stdout). */
const LOG_LIMIT = { 'max-size': '1m', 'max-file': '2' };

/** Worker-level settings of the sandbox provider. */
export interface SandboxSettings {
  /** Default image when the agent names none. */
  image: string;
  /** OCI runtime (for example `runsc`); engine default when unset. */
  runtime?: string;
  /** Output cap in characters for one tool result. */
  outputCap: number;
  /**
   * The deployment the sandboxes belong to (label `tandem.scope`): the reaper touches only its own, and names and
   * slots hash it in, so two deployments on one Docker host never share a sandbox.
   */
  scope?: string;
  /** Directory of the sandboxes' slots on this host (default: {@link defaultHandsDir}). */
  handsDir?: string;
  /** `quota`: each workspace an ext4 image of `disk_mb`; `volume`: a Docker volume without a size limit. */
  workspaceMode?: WorkspaceMode;
  /** Workspace size when the agent names none (quota mode). */
  diskMb?: number;
  /** The engine's remap user when it runs with `userns-remap` (default `dockremap`, the user of `default`). */
  usernsRemapUser?: string;
  /** Warm containers kept per container shape (quota mode only); 0 or unset: none. */
  warmContainers?: number;
}

/** Deterministic, Docker-safe name of a session's container in a deployment (`scope`). */
export function sandboxNames(sessionId: string, scope = ''): { container: string } {
  const clean = sessionId.replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 80);
  return { container: `tandem-${clean}-${slotKey(scope, sessionId).slice(2, 10)}` };
}

/** Label of a warm container (its value: the pid of the hands process that keeps it). */
export const LABEL_WARM = 'tandem.warm';

/** Labels of a session's container and volume. */
function labels(ref: SandboxRef, settings: SandboxSettings): Record<string, string> {
  return { [LABEL_MANAGED]: 'true', [LABEL_SESSION]: ref.session_id, ...(settings.scope ? { [LABEL_SCOPE]: settings.scope } : {}) };
}

/** The hardened container spec of DESIGN rule 8. */
export function containerSpec(
  ref: SandboxRef,
  settings: SandboxSettings,
  slot: Pick<Slot, 'sock' | 'workspace' | 'uploads' | 'outputs' | 'skills'>,
  gateway?: GatewayMount,
  extraLabels: Record<string, string> = {},
): Docker.ContainerCreateOptions & { name: string } {
  const c: SandboxConfig = ref.config;
  const memory = (c.memory_mb ?? 1024) * 1024 * 1024;
  return {
    name: sandboxNames(ref.session_id, settings.scope).container,
    Image: c.image ?? settings.image,
    Cmd: [...TOOLBOX, 'serve'],
    User: SANDBOX_USER,
    WorkingDir: '/workspace',
    // The gateway adds only loopback proxy addresses here: no secret is ever part of a container's spec.
    Env: [
      `TANDEM_OUTPUT_CAP=${settings.outputCap}`,
      `TANDEM_RUN_DIR=${RUN_DIR}`,
      `TANDEM_HOST_DIR=${HOST_MOUNT}`,
      ...(gateway?.env ?? []),
    ],
    Labels: { ...labels(ref, settings), ...extraLabels },
    NetworkDisabled: true,
    HostConfig: {
      Init: true,
      ReadonlyRootfs: true,
      // tmpfs pages count against the memory limit: keep /tmp well below it, so filling it cannot OOM the sandbox.
      // The toolbox keeps full outputs on a tmpfs of its own, so a full /tmp cannot silence it.
      Tmpfs: {
        '/tmp': `rw,nosuid,nodev,size=${Math.max(16, Math.min(1024, Math.floor((c.memory_mb ?? 1024) / 4)))}m`,
        [RUN_DIR]: 'rw,nosuid,nodev,size=64m,uid=1000,gid=1000,mode=0700',
      },
      Binds: [
        `${slot.workspace}:/workspace`,
        `${slot.sock}:${HOST_MOUNT}:ro`,
        `${slot.uploads}:${UPLOADS_MOUNT}:ro`,
        `${slot.outputs}:${OUTPUTS_MOUNT}`,
        `${slot.skills}:${SKILLS_MOUNT}:ro`,
      ],
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      PidsLimit: c.pids_limit ?? 256,
      Memory: memory,
      MemorySwap: memory,
      NanoCpus: Math.round((c.cpu ?? 1) * 1e9),
      NetworkMode: 'none',
      Privileged: false,
      Ulimits: [{ Name: 'nofile', Soft: NOFILE, Hard: NOFILE }],
      LogConfig: { Type: 'json-file', Config: LOG_LIMIT },
      ...(settings.runtime ? { Runtime: settings.runtime } : {}),
    },
  };
}

/** What the toolbox answers when the shell died under a bash command (`sandbox/toolbox.mjs`). */
const SHELL_EXITED = 'bash: the shell exited before the command finished';

/** A tool's answer as the host accepts it from the toolbox. */
interface ToolAnswer {
  content: string;
  is_error: boolean;
  truncated: boolean;
  output_path?: string;
}

/** The toolbox's answer to a call, checked: the result, or what is wrong with it (the toolbox is then replaced). */
export function checkToolAnswer(answer: Record<string, unknown>, cap: number): ToolAnswer | string {
  const r = answer.result as Record<string, unknown> | undefined;
  if (typeof r !== 'object' || r === null || Array.isArray(r))
    return typeof answer.error === 'string' ? `it refused the call: ${answer.error.slice(0, 200)}` : 'an answer without a result';
  if (typeof r.content !== 'string') return 'a result whose content is not a string';
  if (r.content.length > cap) return `a result of ${r.content.length} characters (the cap is ${cap})`;
  if (typeof r.is_error !== 'boolean' || typeof r.truncated !== 'boolean') return 'a result without is_error or truncated';
  const path = r.output_path;
  if (path !== undefined && (typeof path !== 'string' || path.length > 300 || !path.startsWith(OUTPUTS_DIR) || path.includes('..')))
    return 'a result with a bad output_path';
  return { content: r.content, is_error: r.is_error, truncated: r.truncated, ...(path ? { output_path: path as string } : {}) };
}

/** What a program run in a sandbox printed (the last 64 KiB of each stream), and its exit code. */
export interface RunOutcome {
  exit: number;
  stdout: string;
  stderr: string;
}

/** Runs a program in the sandbox as the sandbox user, over its toolbox line. */
export async function runInSandbox(line: ToolboxLine, argv: string[], stdin?: string, timeoutMs = 600_000): Promise<RunOutcome> {
  const a = await line.request('run', { argv, ...(stdin !== undefined ? { stdin } : {}), timeout_ms: timeoutMs });
  if (typeof a.exit !== 'number' || typeof a.stdout !== 'string' || typeof a.stderr !== 'string') {
    line.cut(typeof a.error === 'string' ? `run refused: ${a.error.slice(0, 200)}` : 'a run answer of the wrong shape');
    throw sandboxLost('the sandbox answered a command with something that is not its outcome');
  }
  return { exit: a.exit, stdout: a.stdout, stderr: a.stderr };
}

/** A sandbox that runs, and the open line to its toolbox. */
interface Running {
  container: Docker.Container;
  line: ToolboxLine;
  /** Set when this call created the container. */
  created?: SandboxInfo;
  /** Set when this call restored the workspace from a snapshot. */
  restored?: ProvisionResult['restored'];
  /** Set when a warm container took the sandbox on. */
  warm?: boolean;
}

/** Default hands directory: `/var/lib/tandem/hands` for root, else `$TMPDIR/tandem-hands-<uid>`. */
export function defaultHandsDir(): string {
  const uid = process.getuid?.();
  return uid === 0 ? '/var/lib/tandem/hands' : `${process.env.TMPDIR ?? '/tmp'}/tandem-hands-${uid ?? 'user'}`;
}

/** What the sandbox activities are built from. */
export interface HandsDeps {
  docker: Docker;
  settings: SandboxSettings;
  /** Credential and egress proxies; sessions with repositories or limited egress need one. */
  gateway?: Gateway;
  /** Workspace snapshots in the store shared by all hands hosts; without it, `snapshotSandbox` refuses. */
  snapshots?: Snapshots;
  /** This host's place among the hands hosts (placement, its own task queue). */
  registry?: HostRegistry;
  /** The file store: session files are read from it into sandboxes, and their outputs published to it. */
  files?: FileStore;
  /** The skill store: a session's skills are read from it into its sandbox. */
  skills?: SkillStore;
}

/** Creates the sandbox activities over a Docker client. */
export function createSandboxActivities(deps: HandsDeps) {
  return createHands(deps).activities;
}

/** The hands of this host: the sandbox activities, the slots they keep, and a shutdown that closes their lines. */
export function createHands({ docker, settings, gateway, snapshots, registry, files, skills }: HandsDeps) {
  const slots = new Slots(settings.handsDir ?? defaultHandsDir(), settings.scope ?? '', settings.workspaceMode ?? 'volume');
  const sessionFiles = files ? new SessionFilesOnHost(files, skills) : undefined;
  // A result is at most outputCap characters; as JSON, at most 6 bytes each (\uXXXX), plus room for a `run` answer.
  const channels = new ToolboxChannels(Math.max(6 * settings.outputCap, 1024 * 1024) + 64 * 1024);
  let owner: Promise<SandboxOwner> | undefined;
  const sandboxUser = () =>
    (owner ??= docker
      .info()
      .then((i: { SecurityOptions?: string[] }) => sandboxOwner(i.SecurityOptions ?? [], settings.usernsRemapUser))
      .catch((err: unknown) => {
        owner = undefined; // asked again next time (the engine may be restarting)
        throw err;
      }));

  const heartbeat = (details?: unknown) => {
    try {
      Context.current().heartbeat(details);
    } catch {
      // outside an activity (direct calls from tests or tools)
    }
  };

  function info(ref: SandboxRef, id: string, state: SandboxInfo['state']): SandboxInfo {
    const slot = slots.paths(ref.session_id);
    return {
      name: sandboxNames(ref.session_id, settings.scope).container,
      container_id: id,
      image: ref.config.image ?? settings.image,
      volume: slots.mode === 'quota' ? slot.key : slot.workspace,
      state,
      ...(registry ? { host: registry.hostId, task_queue: registry.queue } : {}),
    };
  }

  /**
   * Waits (heartbeating) while the Docker engine does not answer, for up to two minutes: an engine restart should
   * cost a tool call some seconds, not its retry budget.
   */
  async function waitForEngine(timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await docker.ping();
        return;
      } catch (err) {
        if (Date.now() > deadline)
          throw provisionFailed(`the Docker engine did not answer for ${timeoutMs / 1000} s: ${(err as Error).message}`);
        heartbeat({ waiting: 'docker engine' });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** The workspace of a sandbox as a directory of this host. */
  async function workspaceDir(ref: SandboxRef): Promise<string> {
    const slot = slots.paths(ref.session_id);
    if (slots.mode === 'quota') return slot.workspace;
    return (await docker.getVolume(slot.workspace).inspect()).Mountpoint;
  }

  /**
   * The slot of a sandbox, made ready: directories, this process's channel socket, the workspace mounted. Returns
   * whether the workspace is new on this host (and so empty: a snapshot may be restored into it).
   */
  async function prepareSlot(ref: SandboxRef, fresh: boolean): Promise<{ slot: Slot; created: boolean }> {
    const explicitDisk = ref.config.disk_mb;
    if (explicitDisk !== undefined && slots.mode !== 'quota')
      throw provisionFailed(
        `the sandbox asks for disk_mb ${explicitDisk}, but this hands host cannot limit workspaces ` +
          '(TANDEM_WORKSPACE_QUOTA=off, or not root, or no loop devices); remove disk_mb or run the host as root',
        true,
      );
    const slot = slots.prepare(ref.session_id);
    await channels.listen(slot.sock);
    await slots.mountOutputs(slot, await sandboxUser());
    if (slots.mode === 'quota')
      return { slot, created: await slots.mountWorkspace(slot, explicitDisk ?? settings.diskMb ?? DEFAULT_DISK_MB, await sandboxUser(), fresh) };
    if (fresh) await docker.getVolume(slot.workspace).remove().catch(() => undefined);
    const existed = await docker.getVolume(slot.workspace).inspect().then(() => true, () => false);
    if (!existed) await docker.createVolume({ Name: slot.workspace, Labels: labels(ref, settings) }).catch(() => undefined);
    return { slot, created: !existed };
  }

  /**
   * Finds the session's sandbox running with its toolbox on the line, or replaces it: a missing, exited, killed,
   * paused or mute container is removed and a fresh one is created on the same workspace (unless the workspace is
   * ephemeral).
   */
  async function ensureRunning(ref: SandboxRef, restore?: string, wipe = false): Promise<Running> {
    const sock = slots.paths(ref.session_id).sock;
    // The common case: the toolbox of the running container is on the line already.
    const open = wipe ? undefined : await channels.anyLine(sock);
    if (open) return { container: docker.getContainer(open.host), line: open };

    let mount: GatewayMount | undefined;
    if (needsGateway(ref)) {
      if (!gateway)
        throw provisionFailed('this session has repositories or network egress, but this worker runs no gateway for them', true);
      mount = await gateway.ensure(ref);
    }
    const name = sandboxNames(ref.session_id, settings.scope).container;
    const existing = docker.getContainer(name);
    const inspect = () =>
      existing.inspect().catch((err: unknown) => {
        if (dockerStatus(err) === 404) return undefined;
        throw err;
      });
    const inspected = await inspect().catch(async (err: unknown) => {
      if (dockerStatus(err) !== undefined) throw err; // the engine answered: a real error
      await waitForEngine(); // no answer at all: the engine may be restarting
      return inspect();
    });
    if (inspected?.State.Running && !inspected.State.Paused && !wipe) {
      // Running, but this process has no line to it yet (another process made it, or this one restarted): its
      // toolbox dials the new socket within seconds. One that does not is mute and gets replaced.
      await channels.listen(sock);
      const line = await channels.connect(sock, inspected.Config.Hostname, TOOLBOX_REDIAL_MS);
      if (line) {
        if (mount) await forward(line, mount);
        return { container: docker.getContainer(inspected.Id), line };
      }
    }
    if (inspected) {
      await existing.remove({ force: true }).catch((err: unknown) => {
        if (dockerStatus(err) !== 404) throw err;
      });
    }
    if (!inspected && !mount) {
      const claimed = await claimWarm(ref, restore);
      if (claimed) return claimed;
    }
    gateway?.checkRepositories(ref);
    // A wipe (a rewind) starts from an empty workspace, as an ephemeral one does when its container is replaced.
    const fresh = wipe || (Boolean(inspected) && ref.config.workspace === 'ephemeral');
    const { slot, created } = await prepareSlot(ref, fresh);
    const newWorkspace = created || fresh;
    // A workspace new to this host (the sandbox was placed here after its host was lost) gets its latest snapshot
    // back, before any container could have touched it.
    const restored = restore && newWorkspace ? await restoreInto(ref, restore) : undefined;
    const spec = containerSpec(ref, settings, slot, mount);
    let container: Docker.Container;
    try {
      container = await docker.createContainer(spec);
    } catch (err) {
      if (dockerStatus(err) === 409) return ensureRunning(ref, restore); // another attempt created it meanwhile (and wiped)
      throw fromDocker(err, `creating sandbox ${spec.name} from image ${spec.Image}`);
    }
    try {
      await container.start();
      const started = await container.inspect();
      const line = await toolboxOf(container, slot.sock, started.Config.Hostname);
      if (mount) {
        await forward(line, mount);
        await cloneRepositories(line, ref);
      }
      return { container, line, created: info(ref, container.id, 'running'), ...(restored ? { restored } : {}) };
    } catch (err) {
      // Start afresh next attempt: a half-prepared container must not be found and reused.
      await container.remove({ force: true }).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The line of a new container's toolbox once it has dialled in: waited for up to TOOLBOX_START_MS while the
   * container runs, checked every 5 s; a container that stopped or went away is a lost sandbox at once.
   */
  async function toolboxOf(container: Docker.Container, sock: string, hostname: string): Promise<ToolboxLine> {
    const deadline = Date.now() + TOOLBOX_START_MS;
    for (;;) {
      const line = await channels.connect(sock, hostname, Math.max(0, Math.min(5_000, deadline - Date.now())));
      if (line) return line;
      const state = await container.inspect().then((c) => c.State, () => undefined);
      if (!state?.Running)
        throw sandboxLost(`the sandbox's container ${state ? `exited (code ${state.ExitCode})` : 'went away'} before its toolbox came up`);
      if (Date.now() >= deadline) throw sandboxLost(`the sandbox's toolbox did not come up within ${TOOLBOX_START_MS / 1000} s`);
    }
  }

  /** Restores a snapshot into the sandbox's workspace, new to this host and untouched by any tool. */
  async function restoreInto(ref: SandboxRef, snapshotId: string): Promise<Running['restored']> {
    if (!snapshots)
      throw provisionFailed('this sandbox has a snapshot to restore, but this hands host has no snapshot store', true);
    return snapshots.restore(ref.session_id, snapshotId, await workspaceDir(ref), await sandboxUser());
  }

  const warm = new WarmPool({
    target: slots.mode === 'quota' ? (settings.warmContainers ?? 0) : 0,
    idleMs: 10 * 60_000,
    defaultImage: settings.image,
    create: createWarm,
    destroy: destroyWarm,
    log: (m) => console.error(`tandem hands: ${m}`),
  });

  /** Starts a warm container of `config`'s shape on a slot of its own, and waits until its toolbox is on the line. */
  async function createWarm(config: SandboxConfig): Promise<WarmEntry> {
    const id = `warm-${randomBytes(6).toString('hex')}`;
    const ref: SandboxRef = { session_id: id, config };
    const { slot } = await prepareSlot(ref, false);
    writeMeta(slot, { session_id: id, scope: settings.scope ?? '', created_at: new Date().toISOString(), warm_owner: process.pid });
    const container = await docker.createContainer(containerSpec(ref, settings, slot, undefined, { [LABEL_WARM]: String(process.pid) }));
    const entry: WarmEntry = { id, dir: slot.dir, containerId: container.id, hostname: '', image: config.image ?? settings.image };
    try {
      await container.start();
      entry.hostname = (await container.inspect()).Config.Hostname;
      await toolboxOf(container, slot.sock, entry.hostname);
      return entry;
    } catch (err) {
      await destroyWarm(entry);
      throw err;
    }
  }

  /** Removes a warm container and its slot. */
  async function destroyWarm(entry: WarmEntry): Promise<void> {
    await docker.getContainer(entry.containerId).remove({ force: true }).catch(() => undefined);
    await channels.close(join(entry.dir, 'sock'));
    await removeSlotDir(entry.dir);
  }

  /**
   * Takes a warm container on for a sandbox that has neither a container nor a slot on this host yet: the warm
   * slot is renamed to the session's, the container gets the session's name. Undefined when none fits (the caller
   * starts one cold).
   */
  async function claimWarm(ref: SandboxRef, restore?: string): Promise<Running | undefined> {
    if (ref.config.workspace === 'ephemeral') return undefined;
    const entry = warm.take(ref.config);
    if (!entry) return undefined;
    const slot = slots.paths(ref.session_id);
    try {
      renameSync(entry.dir, slot.dir); // refused when the session has a slot here already
    } catch {
      await destroyWarm(entry);
      return undefined;
    }
    writeMeta(slot, { session_id: ref.session_id, scope: settings.scope ?? '', created_at: new Date().toISOString() });
    await channels.move(join(entry.dir, 'sock'), slot.sock);
    const container = docker.getContainer(entry.containerId);
    const line = await channels.line(slot.sock, entry.hostname);
    try {
      if (!line) throw new Error('its toolbox is no longer on the line');
      await container.rename({ name: sandboxNames(ref.session_id, settings.scope).container });
      const restored = restore ? await restoreInto(ref, restore) : undefined;
      return { container, line, created: info(ref, entry.containerId, 'running'), warm: true, ...(restored ? { restored } : {}) };
    } catch (err) {
      // Start afresh: the half-taken container and its slot go, the next attempt starts one cold.
      await container.remove({ force: true }).catch(() => undefined);
      await channels.close(slot.sock);
      await removeSlotDir(slot.dir);
      throw sandboxLost(`a warm container could not take the sandbox on: ${(err as Error).message}`);
    }
  }

  function writeMeta(slot: Slot, meta: SlotMeta & { warm_owner?: number }): void {
    writeFileSync(join(slot.dir, 'meta.json'), JSON.stringify(meta) + '\n', { mode: 0o644 });
  }

  /**
   * Removes what an earlier process of this host left warm (its warm containers and slots), then keeps the default
   * shape warm. Warm things of a hands process that still runs (another one on this host) are left alone.
   */
  async function start(): Promise<void> {
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return pid !== process.pid; // this process keeps nothing warm yet: its pid there is an earlier one's
      } catch {
        return false;
      }
    };
    const scoped = settings.scope ? [`${LABEL_SCOPE}=${settings.scope}`] : [];
    for (const c of await docker.listContainers({ all: true, filters: { label: [LABEL_WARM, ...scoped] } }))
      if (c.Names.some((n) => n.startsWith('/tandem-warm-')) && !alive(Number(c.Labels[LABEL_WARM])))
        await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    for (const s of listSlots(slots.root) as Array<SlotMeta & { dir: string; warm_owner?: number }>)
      if (s.warm_owner !== undefined && s.scope === (settings.scope ?? '') && !alive(s.warm_owner)) await removeSlotDir(s.dir);
    warm.want({});
  }

  /** Has the toolbox relay the gateway's proxy ports (idempotent; the relay lives in the toolbox process). */
  async function forward(line: ToolboxLine, mount: GatewayMount): Promise<void> {
    const a = await line.request('forward', { ports: mount.ports });
    if (a.ok !== true) throw sandboxLost(`the sandbox could not relay the gateway's ports: ${String(a.error ?? 'no answer').slice(0, 200)}`);
  }

  /**
   * Clones the session's repositories through the credential proxy, or points an existing clone (on the
   * persistent workspace) at the current phantom token.
   */
  async function cloneRepositories(line: ToolboxLine, ref: SandboxRef): Promise<void> {
    const token = await gateway!.token(ref);
    for (const [i, repo] of (ref.resources ?? []).entries()) {
      const path = repositoryPath(repo);
      const url = remoteUrl(token, i, repo);
      const exists = (await runInSandbox(line, ['test', '-d', `${path}/.git`])).exit === 0;
      const steps: string[][] = exists
        ? [['git', '-C', path, 'remote', 'set-url', 'origin', url]]
        : [
            [
              'git',
              'clone',
              '--quiet',
              ...(repo.checkout?.type === 'branch' ? ['--branch', repo.checkout.name] : []),
              url,
              path,
            ],
            ...(repo.checkout?.type === 'commit' ? [['git', '-C', path, 'checkout', '--quiet', '--detach', repo.checkout.sha]] : []),
          ];
      for (const cmd of steps) {
        heartbeat({ phase: 'clone', repository: repo.url });
        const r = await runInSandbox(line, cmd);
        if (r.exit !== 0)
          throw resourceFailed(
            `could not ${exists ? 'update' : 'clone'} ${repo.url} into ${path}: ${r.stderr.trim().split('\n').slice(-3).join(' ').replaceAll(token, '***').slice(0, 1000) || `exit ${r.exit}`}`,
          );
      }
    }
  }

  /** Runs `fn` while heartbeating every 2 s: creating a container on a loaded engine can take longer than the timeout. */
  async function beating<T>(details: unknown, fn: () => Promise<T>): Promise<T> {
    heartbeat(details);
    const timer = setInterval(() => heartbeat(details), 2000);
    try {
      return await fn();
    } finally {
      clearInterval(timer);
    }
  }

  /** Refuses a sandbox placed on another host (a task that reached the wrong queue, or a grader elsewhere). */
  function checkHere(ref: SandboxRef): void {
    if (ref.placement && registry && ref.placement.host_id !== registry.hostId)
      throw handsRefused(Failure.HandsWrongHost, `the sandbox of ${ref.session_id} runs on hands host ${ref.placement.host_id}, not on ${registry.hostId}`);
  }

  /**
   * Creates (or finds) the session's sandbox. Called lazily, on the first tool call, and on a host that takes a
   * sandbox over from a lost one, with the snapshot to restore.
   */
  async function provision(input: ProvisionInput): Promise<ProvisionResult> {
    const started = Date.now();
    const { restore, wipe, ...ref } = input;
    checkHere(ref);
    const { container, created, restored, warm: fromWarm } = await beating({ phase: 'provision' }, () =>
      ensureRunning(ref, restore, wipe === true),
    );
    warm.want(ref.config); // sessions of this shape start warm from now on
    return {
      sandbox: created ?? info(ref, container.id, 'running'),
      duration_ms: Date.now() - started,
      ...(restored ? { restored } : {}),
      ...(fromWarm ? { warm: true } : {}),
      ...(wipe ? { wiped: true } : {}),
    };
  }

  /** Snapshots the session's workspace into the shared store (after a tool turn). */
  async function snapshotSandbox(ref: SandboxRef): Promise<SnapshotResult> {
    if (!snapshots)
      throw handsRefused(Failure.SnapshotUnavailable, 'this hands host has no snapshot store');
    checkHere(ref);
    return beating({ phase: 'snapshot' }, async () => snapshots.take(ref.session_id, await workspaceDir(ref)));
  }

  /** Picks the hands host of a sandbox (any host may run this; see hosts.ts). */
  async function placeSandbox(input: PlaceSandboxInput): Promise<Placement> {
    if (!registry) throw handsRefused(Failure.HandsUnavailable, 'this worker places no sandboxes');
    return registry.place(input);
  }

  /**
   * Why a call got no good answer, as a `Sandbox.Lost` once the container is out of the way: it stopped, was
   * paused or removed, or it runs but broke the protocol or stopped answering (then it is killed, and replaced by
   * the next attempt; the workspace stays).
   */
  async function lostDuring(container: Docker.Container, line: ToolboxLine, tool: string, failure: unknown): Promise<ApplicationFailure> {
    line.close();
    const id = container.id.slice(0, 12);
    if (failure instanceof ChannelClosed && failure.violation) {
      await container.kill().catch(() => undefined);
      return sandboxLost(`sandbox container ${id} ${failure.message} during ${tool}, and was replaced`);
    }
    const state = await settledState(container, 15);
    if (!state?.Running || state.Paused) {
      const why = !state
        ? 'was removed'
        : state.Paused
          ? 'was paused'
          : state.OOMKilled
            ? 'was OOM-killed'
            : `exited (code ${state.ExitCode})`;
      return sandboxLost(`sandbox container ${id} ${why} during ${tool}`);
    }
    // It runs but its toolbox cannot answer (for example every process slot is taken): the sandbox is broken, so
    // it is replaced, like a lost one.
    await container.kill().catch(() => undefined);
    return sandboxLost(`sandbox container ${id} stopped answering during ${tool} and was replaced`);
  }

  /**
   * A container's state once it has stopped, or after `polls` reads 200 ms apart that still find it running (a killed
   * container can still read as running for a moment); undefined when it is gone or its engine does not answer.
   */
  async function settledState(container: Docker.Container, polls: number): Promise<Docker.ContainerInspectInfo['State'] | undefined> {
    let state: Docker.ContainerInspectInfo['State'] | undefined;
    for (let i = 0; i < polls; i++) {
      state = await container.inspect().then((c) => c.State, () => undefined);
      if (!state?.Running || state.Paused) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    return state;
  }

  /** Runs one tool call in the session's sandbox and returns its (bounded) string output. */
  async function execute(input: ExecuteInput): Promise<ExecuteResult> {
    const started = Date.now();
    checkHere(input.sandbox);
    const ctx = (() => {
      try {
        return Context.current();
      } catch {
        return undefined;
      }
    })();
    // The toolbox answers a repeated call id with the first result, so a retry after a lost worker never runs a
    // tool twice. The id names this activity (run and activity id), so a rewind, which schedules it anew, does.
    const callId = ctx
      ? `${input.tool_use_id}.${createHash('sha256').update(`${ctx.info.workflowExecution?.runId}/${ctx.info.activityId}`).digest('hex').slice(0, 10)}`
      : input.tool_use_id;
    const rewind = input.rewind;
    const { container, line, created, restored } = await beating({ phase: 'provision' }, () =>
      ensureRunning(input.sandbox, rewind?.snapshot_id ?? undefined, rewind !== undefined),
    );
    // Every 2 s: heartbeat (which carries cancellation), check that the container still runs (a paused container
    // would otherwise hold the call until its timeout) and that the toolbox still answers a ping: a toolbox that
    // does not (it hangs, or what holds the line is not a toolbox) is given up within PING_TIMEOUT_MS. A call that
    // outlives its own timeout by 30 s is abandoned too. Either way the container is replaced.
    const gone = new AbortController();
    const timeoutMs = input.name === 'bash' ? Math.min(Number(input.input.timeout_ms) || 120_000, 600_000) : 60_000;
    const deadline = Date.now() + timeoutMs + 30_000;
    let lastPong = Date.now();
    let pinging = false;
    const beat = setInterval(() => {
      heartbeat({ tool: input.name });
      if (Date.now() > deadline || Date.now() - lastPong > PING_TIMEOUT_MS) gone.abort();
      void container.inspect().then(
        (i) => (!i.State.Running || i.State.Paused) && gone.abort(),
        () => gone.abort(),
      );
      if (pinging) return;
      pinging = true;
      void line.request('ping', {}, gone.signal).then(
        (a) => (a.ok === true ? (lastPong = Date.now()) : line.cut('a ping answered with something else')),
        () => undefined,
      ).finally(() => (pinging = false));
    }, 2000);
    const onCancel = () => void line.request('cancel', { id: callId }).catch(() => undefined);
    ctx?.cancellationSignal.addEventListener('abort', onCancel);
    let result: ExecuteResult;
    const slot = slots.paths(input.sandbox.session_id);
    const notes: string[] = [];
    try {
      // The session's files as they are now, before the call that may read them.
      const wanted = input.sandbox.files;
      if (wanted && sessionFiles) {
        const note = await beating({ phase: 'files' }, () => sessionFiles.sync(slot, wanted));
        if (note) notes.push(note);
        await beating({ phase: 'skills' }, () => sessionFiles.syncSkills(slot, input.sandbox.skills ?? []));
      }
      heartbeat({ tool: input.name });
      const answer = await line
        .request('call', { call: { id: callId, name: input.name, input: input.input } }, gone.signal)
        .catch((err: unknown) => err as Error);
      if (ctx?.cancellationSignal.aborted) throw new CancelledFailure('tool call cancelled');
      if (answer instanceof Error) throw await lostDuring(container, line, input.name, answer);
      const r = checkToolAnswer(answer, settings.outputCap);
      if (typeof r === 'string') {
        line.cut(r);
        throw await lostDuring(container, line, input.name, line.closed);
      }
      // A shell killed because its container died (the engine went down, an OOM kill) is a lost sandbox, not the
      // command's result: the call runs again in a fresh one. A shell that ran `exit` leaves its container running.
      if (input.name === 'bash' && r.is_error && r.content.includes(SHELL_EXITED)) {
        const state = await settledState(container, 10);
        if (!state?.Running || state.Paused)
          throw await lostDuring(container, line, input.name, new ChannelClosed('lost its shell with the container', false));
      }
      const denied = usesEgress(input.sandbox) ? gateway?.drainDenials(input.sandbox.session_id) : undefined;
      // What the call left in /mnt/session/outputs, published (a failure to publish costs a note, not the result).
      if (sessionFiles && input.sandbox.files) {
        const note = await beating({ phase: 'outputs' }, () => sessionFiles.publish(slot, input.sandbox.session_id)).catch(
          (err: unknown) => `[tandem: the session's outputs could not be published: ${(err as Error).message}]`,
        );
        if (note) notes.push(note);
      }
      const content = [input.notice, r.content, ...notes].filter((c) => c !== undefined).join('\n\n');
      result = {
        ...r,
        content,
        container_id: container.id,
        ...(created ? { provisioned: created } : {}),
        duration_ms: Date.now() - started,
        ...(denied?.length ? { egress_denied: denied } : {}),
        ...(rewind ? { wiped: true } : {}),
        ...(restored ? { restored } : {}),
      };
    } finally {
      clearInterval(beat);
      ctx?.cancellationSignal.removeEventListener('abort', onCancel);
    }
    if (!input.snapshot || !snapshots) return result;
    // The turn's snapshot rides on its last call. A snapshot that fails costs only itself: the result goes without
    // one, and the workflow takes it with snapshotSandbox instead.
    try {
      const snapshot = await beating({ phase: 'snapshot' }, async () => snapshots.take(input.sandbox.session_id, await workspaceDir(input.sandbox)));
      return { ...result, snapshot };
    } catch (err) {
      const why = `tandem hands: the snapshot of ${input.sandbox.session_id} after ${input.tool_use_id} failed: ${(err as Error).message}`;
      if (ctx) ctx.log.warn(why);
      else console.error(why);
      return result;
    }
  }

  /** Stops an idle session's container; the next tool call brings a fresh one on the same workspace. */
  async function stopSandbox(ref: SandboxRef): Promise<void> {
    const slot = slots.paths(ref.session_id);
    (await channels.anyLine(slot.sock))?.close();
    await docker
      .getContainer(sandboxNames(ref.session_id, settings.scope).container)
      .stop({ t: 2 })
      .catch((err: unknown) => {
        if (dockerStatus(err) !== 404 && dockerStatus(err) !== 304) throw err;
      });
    await slots.unmountWorkspace(slot);
  }

  /**
   * Removes a session's container, workspace and slot: the session has ended (its snapshots then expire after the
   * retention), or, with `moved`, its sandbox was placed on another host (its snapshots stay).
   */
  async function removeSandbox(ref: SandboxRef & { moved?: boolean }): Promise<void> {
    const name = sandboxNames(ref.session_id, settings.scope).container;
    const slot = slots.paths(ref.session_id);
    // 404: already gone; 409: a removal is already in progress (the reaper, or another attempt).
    const gone = (err: unknown) => {
      if (dockerStatus(err) !== 404 && dockerStatus(err) !== 409) throw err;
    };
    await docker.getContainer(name).remove({ force: true }).catch(gone);
    await waitRemoved(name);
    await channels.close(slot.sock);
    gateway?.close(ref.session_id);
    if (slots.mode === 'volume') await docker.getVolume(slot.workspace).remove().catch(gone);
    await slots.remove(ref.session_id);
    if (ref.moved) snapshots?.forget(ref.session_id);
    else await snapshots?.ended(ref.session_id);
  }

  async function waitRemoved(name: string): Promise<void> {
    for (let i = 0; i < 50; i++) {
      const exists = await docker.getContainer(name).inspect().then(() => true, () => false);
      if (!exists) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** What this host runs now: its sandboxes that are running (placement prefers the least loaded host). */
  async function load(): Promise<{ running: number; warm: Record<string, number> }> {
    const running = await docker.listContainers({
      filters: { label: [`${LABEL_MANAGED}=true`, ...(settings.scope ? [`${LABEL_SCOPE}=${settings.scope}`] : [])], status: ['running'] },
    });
    const sessions = running.filter((c) => !c.Names.some((n) => n.startsWith('/tandem-warm-')));
    await warm.prune();
    return { running: sessions.length, warm: warm.counts() };
  }

  return {
    // What the engine throws leaves an activity as a failure of a type the session acts on (failures.ts), not as a bare error.
    activities: {
      provision: dockerBoundary('provisioning a sandbox', provision),
      execute: dockerBoundary('running a tool call', execute),
      stopSandbox: dockerBoundary('stopping a sandbox', stopSandbox),
      removeSandbox: dockerBoundary('removing a sandbox', removeSandbox),
      snapshotSandbox: dockerBoundary('snapshotting a workspace', snapshotSandbox),
      placeSandbox,
    },
    slots,
    load,
    /** Warm containers ready for sandboxes of this config. */
    warmReady: (config: SandboxConfig) => warm.readyFor(config),
    /** Cleans up after an earlier process of this host and starts keeping containers warm. */
    start,
    async shutdown() {
      await warm.close();
      await channels.closeAll();
    },
  };
}
