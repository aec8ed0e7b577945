/** Activity factory: every activity gets its clients from here; only `worker.ts` builds concrete clients. */
import type Anthropic from '@anthropic-ai/sdk';
import type { Client } from '@temporalio/client';
import type Docker from 'dockerode';
import type { SessionLogCache } from '../log/cache.js';
import type { ActivityName } from '../shared/names.js';
import { createMcpActivities, McpHub } from './mcp.js';
import { withMetrics } from './metrics.js';
import { createModelActivities } from './model.js';
import type { FileStore } from '../files/store.js';
import { createReplayActivities } from './replay.js';
import type { Vault } from '../vault/index.js';
import { createHands, defaultHandsDir, type SandboxSettings } from './sandbox/docker.js';
import { Gateway } from './sandbox/gateway.js';

/** Clients and settings the activities need. */
export interface ActivityDeps {
  anthropic: Anthropic;
  temporal: Client;
  docker: Docker;
  sandbox: SandboxSettings;
  /** The worker's cache of session logs (`callModel`, `gradeOutcome`); default: a new one over `temporal`. */
  logCache?: SessionLogCache;
  /** Silence after which a model stream is abandoned and retried. */
  modelStallMs?: number;
  /** The worker's MCP connections (they read secrets from the worker's vault). Default: none configured, no secrets. */
  mcp?: McpHub;
  /** The worker's vault: secrets that sessions name (repository credentials). */
  vault?: Vault;
  /** The credential and egress proxies; default: one in the hands directory over `vault`. */
  gateway?: Gateway;
  /** The hands of this host, when the caller keeps them (the worker shuts them down and reaps their slots). */
  hands?: ReturnType<typeof createHands>;
  /** Whether the grader's read-only tools run in this process's hands (a brain alone has none). Default true. */
  graderTools?: boolean;
  /** The file store (the snapshot store's `files/`): files that user messages name are read from it. */
  files?: FileStore;
}

/** Creates all activities of Tandem. */
export function createActivities(deps: ActivityDeps) {
  const gateway =
    deps.gateway ?? new Gateway({ root: deps.sandbox.handsDir ?? defaultHandsDir(), scope: deps.sandbox.scope }, deps.vault);
  const sandbox = (deps.hands ?? createHands({ docker: deps.docker, settings: deps.sandbox, gateway })).activities;
  const mcp = deps.mcp ?? new McpHub({ get: () => undefined });
  return withMetrics({
    ...createModelActivities({
      anthropic: deps.anthropic,
      temporal: deps.temporal,
      ...(deps.logCache ? { logCache: deps.logCache } : {}),
      stallMs: deps.modelStallMs,
      ...(deps.graderTools === false ? {} : { runTool: sandbox.execute }),
      mcp,
      ...(deps.files ? { files: deps.files } : {}),
    }),
    ...sandbox,
    ...createMcpActivities(mcp),
    ...createReplayActivities({ temporal: deps.temporal }),
  });
}

/** The activity interface workflow code proxies (type-only import there). */
export type Activities = ReturnType<typeof createActivities>;

/** Fails to compile when a name in `ActivityNames` is not an activity (a rename the decoder would not notice). */
type AllNamed<Missing extends never> = Missing;
export type ActivityNamesAreActivities = AllNamed<Exclude<ActivityName, keyof Activities>>;
