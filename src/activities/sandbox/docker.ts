/**
 * The hands: disposable, hardened Docker containers behind `provision` and `execute`. Containers are cattle: their
 * names and labels derive from the session ID, so any attempt on any worker can find, reuse or replace them. Tools
 * run inside the container through `docker exec` of the toolbox (sandbox/toolbox.mjs), which holds the persistent
 * shell; there is no network path into the sandbox.
 */
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import { Failure } from '../../shared/failures.js';
import { repositoryPath } from '../../shared/repositories.js';
import type {
  ExecuteInput,
  ExecuteResult,
  ProvisionResult,
  SandboxConfig,
  SandboxInfo,
  SandboxRef,
} from '../../shared/types.js';
import { GATEWAY_MOUNT, needsGateway, remoteUrl, type Gateway, type GatewayMount } from './gateway.js';

/** Label on every container and volume Tandem creates. */
export const LABEL_MANAGED = 'tandem.managed';
/** Label holding the session ID. */
export const LABEL_SESSION = 'tandem.session';
/** Label naming the deployment (Temporal namespace and address) whose sessions own the sandbox. */
export const LABEL_SCOPE = 'tandem.scope';

const TOOLBOX = ['node', '/opt/tandem/toolbox.mjs'];
/** The toolbox's own tmpfs: its socket and the full output of truncated results. */
const RUN_DIR = '/run/tandem';
const SANDBOX_USER = '1000:1000';

/** Worker-level settings of the sandbox provider. */
export interface SandboxSettings {
  /** Default image when the agent names none. */
  image: string;
  /** OCI runtime (for example `runsc`); engine default when unset. */
  runtime?: string;
  /** Output cap in characters for one tool result. */
  outputCap: number;
  /** The deployment the sandboxes belong to (label `tandem.scope`): the reaper touches only its own. */
  scope?: string;
}

/** Deterministic, Docker-safe names of a session's container and workspace volume. */
export function sandboxNames(sessionId: string): { container: string; volume: string } {
  const clean = sessionId.replace(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 80);
  const suffix = clean === sessionId ? '' : `-${createHash('sha256').update(sessionId).digest('hex').slice(0, 8)}`;
  return { container: `tandem-${clean}${suffix}`, volume: `tandem-ws-${clean}${suffix}` };
}

/** Labels of a session's container and volume. */
function labels(ref: SandboxRef, settings: SandboxSettings): Record<string, string> {
  return { [LABEL_MANAGED]: 'true', [LABEL_SESSION]: ref.session_id, ...(settings.scope ? { [LABEL_SCOPE]: settings.scope } : {}) };
}

/** The hardened container spec of DESIGN rule 8. */
export function containerSpec(
  ref: SandboxRef,
  settings: SandboxSettings,
  gateway?: GatewayMount,
): Docker.ContainerCreateOptions & { name: string } {
  const names = sandboxNames(ref.session_id);
  const c: SandboxConfig = ref.config;
  const memory = (c.memory_mb ?? 1024) * 1024 * 1024;
  return {
    name: names.container,
    Image: c.image ?? settings.image,
    Cmd: [...TOOLBOX, 'serve'],
    User: SANDBOX_USER,
    WorkingDir: '/workspace',
    // The toolbox keeps its socket and full outputs on a tmpfs of its own, so a full /tmp cannot silence it.
    // The gateway adds only loopback proxy addresses here: no secret is ever part of a container's spec.
    Env: [`TANDEM_OUTPUT_CAP=${settings.outputCap}`, `TANDEM_RUN_DIR=${RUN_DIR}`, ...(gateway?.env ?? [])],
    Labels: labels(ref, settings),
    NetworkDisabled: true,
    HostConfig: {
      Init: true,
      ReadonlyRootfs: true,
      // tmpfs pages count against the memory limit: keep /tmp well below it, so filling it cannot OOM the sandbox.
      Tmpfs: {
        '/tmp': `rw,nosuid,nodev,size=${Math.max(16, Math.min(1024, Math.floor((c.memory_mb ?? 1024) / 4)))}m`,
        [RUN_DIR]: 'rw,nosuid,nodev,size=64m,uid=1000,gid=1000,mode=0700',
      },
      Binds: [`${names.volume}:/workspace`, ...(gateway ? [`${gateway.hostDir}:${GATEWAY_MOUNT}:ro`] : [])],
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      PidsLimit: c.pids_limit ?? 256,
      Memory: memory,
      MemorySwap: memory,
      NanoCpus: Math.round((c.cpu ?? 1) * 1e9),
      NetworkMode: 'none',
      Privileged: false,
      ...(settings.runtime ? { Runtime: settings.runtime } : {}),
    },
  };
}

function dockerStatus(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

function lost(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: Failure.SandboxLost, message, nonRetryable: false });
}

/** What a command run in a container printed, and its exit code. */
export interface ExecOutcome {
  stdout: string;
  stderr: string;
  exitCode: number | null;
}

/**
 * Runs a command in a container as the sandbox user, feeding `stdin`; resolves with its output and exit code (or
 * as soon as `signal` aborts).
 */
export async function execInContainer(
  docker: Docker,
  container: Docker.Container,
  cmd: string[],
  stdin?: string | Buffer,
  signal?: AbortSignal,
): Promise<ExecOutcome> {
  const exec = await container.exec({
    Cmd: cmd,
    User: SANDBOX_USER,
    AttachStdin: stdin !== undefined,
    AttachStdout: true,
    AttachStderr: true,
  });
  const stream = await exec.start({ hijack: true, stdin: stdin !== undefined });
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks: Buffer[] = [];
  const errChunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  err.on('data', (c: Buffer) => errChunks.push(c));
  docker.modem.demuxStream(stream, out, err);
  const done = new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', () => resolve());
    signal?.addEventListener('abort', () => {
      stream.destroy();
      resolve();
    });
  });
  if (stdin !== undefined) stream.end(stdin);
  await done;
  const inspected = await exec.inspect().catch(() => undefined);
  return {
    stdout: Buffer.concat(chunks).toString('utf8'),
    stderr: Buffer.concat(errChunks).toString('utf8'),
    exitCode: inspected?.ExitCode ?? null,
  };
}

/** Creates the sandbox activities over a Docker client. */
export function createSandboxActivities({
  docker,
  settings,
  gateway,
}: {
  docker: Docker;
  settings: SandboxSettings;
  /** Credential and egress proxies; sessions with repositories or limited egress need one. */
  gateway?: Gateway;
}) {
  const heartbeat = (details?: unknown) => {
    try {
      Context.current().heartbeat(details);
    } catch {
      // outside an activity (direct calls from tests or tools)
    }
  };

  async function info(ref: SandboxRef, id: string, state: SandboxInfo['state']): Promise<SandboxInfo> {
    const names = sandboxNames(ref.session_id);
    return { name: names.container, container_id: id, image: ref.config.image ?? settings.image, volume: names.volume, state };
  }

  const run = (container: Docker.Container, cmd: string[], stdin?: string, signal?: AbortSignal) =>
    execInContainer(docker, container, cmd, stdin, signal);


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
          throw ApplicationFailure.create({
            type: Failure.SandboxProvisionFailed,
            message: `the Docker engine did not answer for ${timeoutMs / 1000} s: ${(err as Error).message}`,
          });
        heartbeat({ waiting: 'docker engine' });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Waits until the toolbox daemon answers, or fails with `Sandbox.Lost` after `timeoutMs`. */
  async function waitReady(container: Docker.Container, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await run(container, [...TOOLBOX, 'ping']).catch(() => undefined);
      if (r?.exitCode === 0 && r.stdout.trim() === 'ok') return;
      if (Date.now() > deadline) throw lost(`sandbox toolbox did not start: ${r?.stderr.trim() || 'no answer'}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  /**
   * Finds the session's container running, or replaces it: a missing, exited, killed or stopped container is
   * removed and a fresh one is created on the same workspace volume (unless the workspace is ephemeral).
   */
  async function ensureRunning(ref: SandboxRef): Promise<{ container: Docker.Container; created?: SandboxInfo }> {
    let mount: GatewayMount | undefined;
    if (needsGateway(ref)) {
      if (!gateway)
        throw ApplicationFailure.create({
          type: Failure.SandboxProvisionFailed,
          message: 'this session has repositories or limited egress, but this worker runs no gateway for them',
          nonRetryable: true,
        });
      mount = await gateway.ensure(ref);
    }
    const spec = containerSpec(ref, settings, mount);
    const existing = docker.getContainer(spec.name);
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
    if (inspected?.State.Running && !inspected.State.Paused) {
      const container = docker.getContainer(inspected.Id);
      // Checked once per container by this worker, and again after a shell was killed (the toolbox may then have
      // swept every process, the forwarder included).
      if (mount && !forwarding.has(inspected.Id)) await startForwarder(container, mount);
      return { container };
    }
    if (inspected) {
      await existing.remove({ force: true }).catch((err: unknown) => {
        if (dockerStatus(err) !== 404) throw err;
      });
      if (ref.config.workspace === 'ephemeral')
        await docker.getVolume(sandboxNames(ref.session_id).volume).remove().catch(() => undefined);
    }
    gateway?.checkRepositories(ref);
    const names = sandboxNames(ref.session_id);
    await docker
      .createVolume({ Name: names.volume, Labels: labels(ref, settings) })
      .catch(() => undefined);
    let container: Docker.Container;
    try {
      container = await docker.createContainer(spec);
    } catch (err) {
      if (dockerStatus(err) === 409) return ensureRunning(ref); // another attempt created it meanwhile
      throw ApplicationFailure.create({
        type: Failure.SandboxProvisionFailed,
        message: `could not create sandbox ${spec.name} from image ${spec.Image}: ${(err as Error).message}`,
        nonRetryable: dockerStatus(err) === 404, // image missing: run scripts/setup
      });
    }
    await container.start();
    await waitReady(container);
    if (mount) {
      try {
        await startForwarder(container, mount);
        await cloneRepositories(container, ref);
      } catch (err) {
        // Start afresh next attempt: a half-prepared container must not be found and reused.
        await container.remove({ force: true }).catch(() => undefined);
        throw err;
      }
    }
    return { container, created: await info(ref, container.id, 'running') };
  }

  /** Containers whose gateway forwarder this worker has seen running. */
  const forwarding = new Set<string>();

  /** Starts the in-container forwarder of the gateway's ports (detached) and waits until they accept connections. */
  async function startForwarder(container: Docker.Container, mount: GatewayMount): Promise<void> {
    const id = container.id;
    if (forwarding.size > 10_000) forwarding.clear(); // ids of long-gone containers: checking again is cheap
    const ports = mount.forwarder.slice(2).map((a) => a.split('=')[0]!);
    const check = () => run(container, ['node', `${GATEWAY_MOUNT}/forward.mjs`, '--check', ...ports]);
    if ((await check()).exitCode === 0) return void forwarding.add(id);
    const exec = await container.exec({ Cmd: mount.forwarder, User: SANDBOX_USER, AttachStdout: false, AttachStderr: false });
    await exec.start({ Detach: true });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await check();
      if (r.exitCode === 0) return void forwarding.add(id);
      if (Date.now() > deadline) throw lost(`the sandbox's gateway forwarder did not start on ports ${ports.join(', ')}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  /**
   * Clones the session's repositories through the credential proxy, or points an existing clone (on the
   * persistent workspace) at the current phantom token.
   */
  async function cloneRepositories(container: Docker.Container, ref: SandboxRef): Promise<void> {
    const token = await gateway!.token(ref);
    for (const [i, repo] of (ref.resources ?? []).entries()) {
      const path = repositoryPath(repo);
      const url = remoteUrl(token, i, repo);
      const exists = (await run(container, ['test', '-d', `${path}/.git`])).exitCode === 0;
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
        const r = await run(container, cmd);
        if (r.exitCode !== 0)
          throw ApplicationFailure.create({
            type: Failure.SandboxResourceFailed,
            message: `could not ${exists ? 'update' : 'clone'} ${repo.url} into ${path}: ${r.stderr.trim().split('\n').slice(-3).join(' ').replaceAll(token, '***') || `exit ${r.exitCode}`}`,
          });
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

  /** Creates (or finds) the session's sandbox. Called lazily, on the first tool call. */
  async function provision(ref: SandboxRef): Promise<ProvisionResult> {
    const started = Date.now();
    const { container, created } = await beating({ phase: 'provision' }, () => ensureRunning(ref));
    return { sandbox: created ?? (await info(ref, container.id, 'running')), duration_ms: Date.now() - started };
  }

  /** Runs one tool call in the session's sandbox and returns its (bounded) string output. */
  async function execute(input: ExecuteInput): Promise<ExecuteResult> {
    const started = Date.now();
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
    const { container, created } = await beating({ phase: 'provision' }, () => ensureRunning(input.sandbox));
    // Every 2 s: heartbeat (which carries cancellation), and check that the container still runs: a paused or
    // dead container would otherwise hold the call until its timeout.
    // A call that outlives its own timeout by 30 s means the sandbox no longer answers (for example a fork bomb
    // took every process slot): it is abandoned and the container replaced.
    const gone = new AbortController();
    const timeoutMs = input.name === 'bash' ? Math.min(Number(input.input.timeout_ms) || 120_000, 600_000) : 60_000;
    const deadline = Date.now() + timeoutMs + 30_000;
    const beat = setInterval(() => {
      heartbeat({ tool: input.name });
      if (Date.now() > deadline) gone.abort();
      void container.inspect().then(
        (i) => (!i.State.Running || i.State.Paused) && gone.abort(),
        () => gone.abort(),
      );
    }, 2000);
    const onCancel = () => {
      void run(container, [...TOOLBOX, 'cancel', callId]).catch(() => undefined);
    };
    ctx?.cancellationSignal.addEventListener('abort', onCancel);
    try {
      heartbeat({ tool: input.name });
      const request = JSON.stringify({ id: callId, name: input.name, input: input.input });
      const outcome = await run(container, [...TOOLBOX, 'call'], request, gone.signal).catch((err: unknown) => {
        if (dockerStatus(err) === 404 || dockerStatus(err) === 409) return undefined;
        throw err;
      });
      if (ctx?.cancellationSignal.aborted) throw new CancelledFailure('tool call cancelled');
      const line = outcome?.exitCode === 0 && !gone.signal.aborted ? outcome.stdout.trim().split('\n').pop() : undefined;
      if (!line) {
        // The exec ended without a result. A killed container can still read as running for a moment.
        let state: Docker.ContainerInspectInfo['State'] | undefined;
        for (let i = 0; i < 15; i++) {
          state = await container.inspect().then((info) => info.State, () => undefined);
          if (!state?.Running || state.Paused) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        if (!state?.Running || state.Paused) {
          const why = !state
            ? 'was removed'
            : state.Paused
              ? 'was paused'
              : state.OOMKilled
                ? 'was OOM-killed'
                : `exited (code ${state.ExitCode})`;
          throw lost(`sandbox container ${container.id.slice(0, 12)} ${why} during ${input.name}`);
        }
        // The container runs but its toolbox cannot answer (for example every process slot is taken): the
        // sandbox is broken, so it is replaced, like a lost one. The workspace volume stays.
        await container.kill().catch(() => undefined);
        throw lost(
          `sandbox container ${container.id.slice(0, 12)} stopped answering during ${input.name} and was replaced ` +
            `(toolbox exit ${outcome?.exitCode}: ${outcome?.stderr.trim().split('\n')[0]?.slice(0, 300) ?? ''})`,
        );
      }
      const r = JSON.parse(line) as { content: string; is_error: boolean; truncated?: boolean; output_path?: string };
      if (r.is_error && input.name === 'bash' && /timed out|cancelled|shell exited/.test(r.content))
        forwarding.delete(container.id);
      const denied = input.sandbox.config.network?.policy === 'limited' ? gateway?.drainDenials(input.sandbox.session_id) : undefined;
      return {
        content: r.content,
        is_error: r.is_error,
        truncated: r.truncated === true,
        ...(r.output_path ? { output_path: r.output_path } : {}),
        container_id: container.id,
        ...(created ? { provisioned: created } : {}),
        duration_ms: Date.now() - started,
        ...(denied?.length ? { egress_denied: denied } : {}),
      };
    } finally {
      clearInterval(beat);
      ctx?.cancellationSignal.removeEventListener('abort', onCancel);
    }
  }

  /** Stops an idle session's container; the next tool call brings a fresh one on the same workspace. */
  async function stopSandbox(ref: SandboxRef): Promise<void> {
    await docker
      .getContainer(sandboxNames(ref.session_id).container)
      .stop({ t: 2 })
      .catch((err: unknown) => {
        if (dockerStatus(err) !== 404 && dockerStatus(err) !== 304) throw err;
      });
  }

  /** Removes a session's container and workspace volume (the session has ended). */
  async function removeSandbox(ref: SandboxRef): Promise<void> {
    const names = sandboxNames(ref.session_id);
    // 404: already gone; 409: a removal is already in progress (the reaper, or another attempt).
    const gone = (err: unknown) => {
      if (dockerStatus(err) !== 404 && dockerStatus(err) !== 409) throw err;
    };
    await docker.getContainer(names.container).remove({ force: true }).catch(gone);
    await waitRemoved(names.container);
    await docker.getVolume(names.volume).remove().catch(gone);
    gateway?.close(ref.session_id);
  }

  async function waitRemoved(name: string): Promise<void> {
    for (let i = 0; i < 50; i++) {
      const exists = await docker.getContainer(name).inspect().then(() => true, () => false);
      if (!exists) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  return { provision, execute, stopSandbox, removeSandbox };
}
