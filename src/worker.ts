/**
 * Composition root: loads configuration, builds the concrete clients (Temporal, Anthropic, Docker) and runs a
 * Worker on the task queue. Any number of workers may run at once; each is a stateless brain plus hands provider.
 */
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import Docker from 'dockerode';
import { createActivities } from './activities/index.js';
import { SessionLogCache } from './log/cache.js';
import { McpHub } from './activities/mcp.js';
import { createHands, defaultHandsDir, LABEL_MANAGED, LABEL_SCOPE, LABEL_SESSION, LABEL_WARM } from './activities/sandbox/docker.js';
import { quotaSupported, type Slots } from './activities/sandbox/slot.js';
import { blobStoreFromEnv, defaultStoreDir } from './activities/sandbox/blob-store.js';
import { defaultHostId, HostRegistry } from './activities/sandbox/hosts.js';
import { placementQueue } from './shared/names.js';
import { Snapshots } from './activities/sandbox/snapshots.js';
import { FileStore } from './files/store.js';
import { SkillStore } from './files/skills.js';
import { loadRuntimeConfig, sandboxScope, type RuntimeConfig } from './config/env.js';
import { Vault } from './vault/index.js';
import { temporalSettings } from './config/temporal.js';
import { installRuntime, logLine } from './telemetry.js';
import { Gateway } from './activities/sandbox/gateway.js';
import { codecFromEnv, tandemDataConverter } from './codec/index.js';

/** Where the workflow code lives (bundled by the worker). */
export const workflowsPath = fileURLToPath(new URL('./workflows/index.js', import.meta.url)).replace(
  /\.js$/,
  import.meta.url.endsWith('.ts') ? '.ts' : '.js',
);

/** What a worker process runs: the brain (sessions, model and MCP calls), the hands (sandboxes), or both. */
export type WorkerRole = 'all' | 'brain' | 'hands';

/** Options for {@link createWorker}; tests pass a prebuilt bundle and their own task queue. */
export interface CreateWorkerOptions {
  config?: RuntimeConfig;
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Model API endpoint and key; default: the SDK's own `ANTHROPIC_BASE_URL` and `ANTHROPIC_API_KEY`. */
  anthropic?: { baseURL?: string; apiKey?: string };
  /** Extra worker options (for example a smaller poller count in tests). */
  worker?: Partial<WorkerOptions>;
  /** The worker's vault; default `new Vault()` (TANDEM_VAULT_FILE, then TANDEM_SECRET_* variables). */
  vault?: Vault;
  /** The Docker engine of the hands; default: dockerode's own (`DOCKER_HOST`, else the local socket). */
  docker?: Docker;
  /** Default `TANDEM_WORKER_ROLE` (`all`). */
  role?: WorkerRole;
}

/** A running worker plus what it owns. */
export interface TandemWorker {
  /** The first of {@link workers}: the brain's worker on the task queue, or, for hands alone, the host's. */
  worker: Worker;
  /** Every Temporal worker of this process: the brain's, the hands' placement worker and the host's own. */
  workers: Worker[];
  client: Client;
  docker: Docker;
  /** What the worker's model activities have read of open runs (one cache per worker process). */
  logCache: SessionLogCache;
  /** The hands of this worker's host: sandbox activities and the slots (workspaces) they keep. */
  hands: ReturnType<typeof createHands>;
  /** This host's id and task queue among the hands hosts (unset for a brain alone). */
  host?: { id: string; queue: string };
  /** Runs until `shutdown()`; resolves when the worker has stopped. */
  run(): Promise<void>;
  shutdown(): Promise<void>;
}

/** Builds a worker with all activities wired to real clients. */
export async function createWorker(opts: CreateWorkerOptions = {}): Promise<TandemWorker> {
  const config = opts.config ?? loadRuntimeConfig();
  const role = opts.role ?? config.TANDEM_WORKER_ROLE;
  const brain = role !== 'hands';
  const withHands = role !== 'brain';
  // TLS, API key and gRPC metadata come from the SDK's env config; address and namespace from the validated config.
  const temporal = temporalSettings({ address: config.TEMPORAL_ADDRESS, namespace: config.TEMPORAL_NAMESPACE });
  const nativeConnection = await NativeConnection.connect(temporal.connection);
  const connection = await Connection.connect(temporal.connection);
  // Encrypted history: the worker's own client (the log reader of callModel) decodes with the same codec.
  const dataConverter = tandemDataConverter(codecFromEnv({ TANDEM_PAYLOAD_KEY: config.TANDEM_PAYLOAD_KEY }));
  const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, ...(dataConverter ? { dataConverter } : {}) });
  // Temporal owns retries: the SDK must not retry behind its back (DESIGN rule 4).
  const anthropic = new Anthropic({
    maxRetries: 0,
    apiKey: opts.anthropic?.apiKey ?? process.env.ANTHROPIC_API_KEY ?? 'unset',
    ...(opts.anthropic?.baseURL ? { baseURL: opts.anthropic.baseURL } : {}),
  });
  const docker = opts.docker ?? new Docker();
  // MCP servers are called from here with the vault's secrets; sandboxes never see them (DESIGN rule 9).
  const vault = opts.vault ?? new Vault();
  const mcp = new McpHub(vault, {
    listTtlMs: config.TANDEM_MCP_LIST_TTL_S * 1000,
    idleMs: config.TANDEM_MCP_IDLE_S * 1000,
    callTimeoutMs: config.TANDEM_MCP_CALL_TIMEOUT_S * 1000,
    outputCap: config.TANDEM_OUTPUT_CAP,
  });
  const hostMap = Object.fromEntries(
    (config.TANDEM_EGRESS_HOST_MAP ?? '')
      .split(',')
      .filter(Boolean)
      .map((pair) => pair.split('=') as [string, string]),
  );
  const handsDir = config.TANDEM_HANDS_DIR ?? defaultHandsDir();
  const scope = sandboxScope(config);
  // Git credentials and egress: proxies on this host; sandboxes hold only a phantom token (DESIGN rule 9).
  const gateway = new Gateway({ root: handsDir, scope, hostMap }, vault);
  const logCache = new SessionLogCache(client);
  const sandbox = {
    image: config.TANDEM_SANDBOX_IMAGE,
    runtime: config.TANDEM_SANDBOX_RUNTIME,
    outputCap: config.TANDEM_OUTPUT_CAP,
    scope,
    handsDir,
    workspaceMode: withHands ? workspaceMode(config.TANDEM_WORKSPACE_QUOTA) : ('volume' as const),
    diskMb: config.TANDEM_WORKSPACE_MB,
    usernsRemapUser: config.TANDEM_USERNS_REMAP_USER,
    warmContainers: config.TANDEM_WARM_CONTAINERS,
  };
  // Workspaces outlive their host: snapshots go to a store every hands host shares (a directory, or S3).
  const store = blobStoreFromEnv(config, { defaultDir: defaultStoreDir(), vault });
  const snapshots = new Snapshots(store);
  const hostId = config.TANDEM_HANDS_ID ?? defaultHostId();
  let load: () => Promise<{ running: number; warm: Record<string, number> }> = async () => ({ running: 0, warm: {} });
  const registry = new HostRegistry(store, config.TANDEM_TASK_QUEUE, hostId, () => load());
  const files = new FileStore(store);
  const hands = createHands({ docker, settings: sandbox, gateway, snapshots, registry, files, skills: new SkillStore(store) });
  load = hands.load;
  const activities = createActivities({
    vault,
    gateway,
    hands,
    anthropic,
    temporal: client,
    logCache,
    docker,
    sandbox,
    modelStallMs: config.TANDEM_MODEL_STALL_S * 1000,
    mcp,
    graderTools: withHands,
    files,
  });
  const common = {
    connection: nativeConnection,
    namespace: config.TEMPORAL_NAMESPACE,
    ...(dataConverter ? { dataConverter } : {}),
    // Heartbeats carry cancellation (interrupt): send them promptly.
    maxHeartbeatThrottleInterval: '1 second',
    defaultHeartbeatThrottleInterval: '1 second',
  } satisfies Partial<WorkerOptions>;
  const { placeSandbox, provision, execute, stopSandbox, removeSandbox, snapshotSandbox, ...brainActivities } = activities;
  const hostActivities = { provision, execute, stopSandbox, removeSandbox, snapshotSandbox };
  const workers: Worker[] = [];
  if (brain)
    workers.push(
      await Worker.create({
        ...common,
        taskQueue: config.TANDEM_TASK_QUEUE,
        ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath }),
        // Sessions begun before hands hosts run their sandbox activities on this queue: a worker with hands
        // serves them there too, as before.
        activities: withHands ? { ...brainActivities, ...hostActivities } : brainActivities,
        // A session cached on a worker that died moves to another worker after this long (default 10 s).
        stickyQueueScheduleToStartTimeout: '3 seconds',
        ...opts.worker,
      }),
    );
  if (withHands) {
    workers.push(
      await Worker.create({ ...common, taskQueue: placementQueue(config.TANDEM_TASK_QUEUE), activities: { placeSandbox } }),
      await Worker.create({ ...common, taskQueue: registry.queue, activities: hostActivities }),
    );
  }

  let timers: NodeJS.Timeout[] = [];
  const every = (ms: number, what: string, fn: () => Promise<unknown>) => {
    const run = () => void fn().catch((err: unknown) => console.error(`tandem worker: ${what}: ${(err as Error).message}`));
    run();
    timers.push(setInterval(run, ms));
  };
  return {
    worker: workers[0]!,
    workers,
    client,
    docker,
    logCache,
    hands,
    ...(withHands ? { host: { id: hostId, queue: registry.queue } } : {}),
    async run() {
      if (withHands) {
        await hands.start();
        await registry.start();
        if (config.TANDEM_REAP_INTERVAL_S > 0)
          every(config.TANDEM_REAP_INTERVAL_S * 1000, 'sandbox reaper', () =>
            reapClosedSessions(docker, client, hands.activities.removeSandbox, scope, hands.slots),
          );
        every(3600_000, 'snapshot retention', () => snapshots.expire(config.TANDEM_SNAPSHOT_RETENTION_H * 3600_000));
      }
      try {
        await Promise.all(workers.map((w) => w.run()));
      } finally {
        for (const t of timers) clearInterval(t);
        timers = [];
        await registry.stop();
        await mcp.close();
        gateway.shutdown();
        await hands.shutdown();
        await connection.close();
        await nativeConnection.close();
      }
    },
    async shutdown() {
      for (const w of workers) w.shutdown();
    },
  };
}

/** How this host makes workspaces: with a size limit when it can (`auto`), or as told. */
export function workspaceMode(setting: 'auto' | 'on' | 'off'): 'quota' | 'volume' {
  if (setting === 'off') return 'volume';
  if (quotaSupported()) return 'quota';
  if (setting === 'on')
    throw new Error('TANDEM_WORKSPACE_QUOTA=on, but this host cannot limit workspaces: it needs root, /dev/loop-control and mkfs.ext4');
  return 'volume';
}

/**
 * Removes the sandboxes of this deployment (`scope`) whose session workflow has closed (terminated, timed out, or
 * gone): their containers, and the slots (workspaces) left without one. Sandboxes of other deployments on the
 * same Docker host are not this worker's to judge.
 */
export async function reapClosedSessions(
  docker: Docker,
  client: Client,
  remove: (ref: { session_id: string; config: object }) => Promise<void>,
  scope: string,
  slots?: Slots,
): Promise<string[]> {
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_SCOPE}=${scope}`] },
  });
  // Warm containers belong to their hands process; one a session took on is found through its slot.
  const sessions = new Set(
    containers.filter((c) => !c.Labels[LABEL_WARM]).map((c) => c.Labels[LABEL_SESSION]).filter((id): id is string => Boolean(id)),
  );
  for (const s of slots?.list() ?? []) if (s.scope === scope && s.warm_owner === undefined) sessions.add(s.session_id);
  const removed: string[] = [];
  for (const sessionId of sessions) {
    const open = await client.workflow
      .getHandle(sessionId)
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch((err: unknown) => ((err as Error).name === 'WorkflowNotFoundError' ? false : true));
    if (!open) {
      await remove({ session_id: sessionId, config: {} });
      removed.push(sessionId);
    }
  }
  return removed;
}

async function main(): Promise<void> {
  const metrics = installRuntime({ defaultLevel: 'INFO', metrics: true });
  const w = await createWorker();
  const stop = () => void w.shutdown();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  logLine(`worker polling task queue "${w.worker.options.taskQueue}"${metrics ? `; metrics on http://${metrics}/metrics` : ''}`);
  await w.run();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error(`tandem worker: ${(err as Error).message}`);
    process.exit(1);
  });
}
