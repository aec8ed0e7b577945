/** Activity factory: every activity gets its clients from here; only `worker.ts` builds concrete clients. */
import type Anthropic from '@anthropic-ai/sdk';
import type { Client } from '@temporalio/client';
import type Docker from 'dockerode';
import { createMcpActivities, McpHub } from './mcp.js';
import { withMetrics } from './metrics.js';
import { createModelActivities } from './model.js';
import { createSandboxActivities, type SandboxSettings } from './sandbox/docker.js';

/** Clients and settings the activities need. */
export interface ActivityDeps {
  anthropic: Anthropic;
  temporal: Client;
  docker: Docker;
  sandbox: SandboxSettings;
  /** Silence after which a model stream is abandoned and retried. */
  modelStallMs?: number;
  /** The worker's MCP connections (they read secrets from the worker's vault). Default: none configured, no secrets. */
  mcp?: McpHub;
}

/** Creates all activities of Tandem. */
export function createActivities(deps: ActivityDeps) {
  const sandbox = createSandboxActivities({ docker: deps.docker, settings: deps.sandbox });
  const mcp = deps.mcp ?? new McpHub({ get: () => undefined });
  return withMetrics({
    ...createModelActivities({
      anthropic: deps.anthropic,
      temporal: deps.temporal,
      stallMs: deps.modelStallMs,
      runTool: sandbox.execute,
      mcp,
    }),
    ...sandbox,
    ...createMcpActivities(mcp),
  });
}

/** The activity interface workflow code proxies (type-only import there). */
export type Activities = ReturnType<typeof createActivities>;
