/** Runtime configuration from the environment, parsed and validated once at start. */
import { isIP } from 'node:net';
import { z } from 'zod';
import { DEFAULT_TASK_QUEUE } from '../shared/names.js';
import { temporalSettings } from './temporal.js';

const schema = z.object({
  // Unset: the SDK's env config profile (temporal.toml), else 127.0.0.1:7233 and `default`.
  TEMPORAL_ADDRESS: z.string().min(1).optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).optional(),
  TANDEM_TASK_QUEUE: z.string().default(DEFAULT_TASK_QUEUE),
  TANDEM_SANDBOX_IMAGE: z.string().default('tandem-sandbox:latest'),
  TANDEM_SANDBOX_RUNTIME: z.string().optional(),
  TANDEM_OUTPUT_CAP: z.coerce.number().int().min(1000).default(30_000),
  TANDEM_DATA_DIR: z.string().optional(),
  TANDEM_REAP_INTERVAL_S: z.coerce.number().min(0).default(60),
  TANDEM_MODEL_STALL_S: z.coerce.number().min(1).default(90),
  TANDEM_SANDBOX_SCOPE: z.string().min(1).optional(),
  TANDEM_MCP_LIST_TTL_S: z.coerce.number().min(0).default(300),
  TANDEM_MCP_IDLE_S: z.coerce.number().min(1).default(300),
  TANDEM_MCP_CALL_TIMEOUT_S: z.coerce.number().min(1).default(300),
  // Hosts of MCP servers that API clients may name although they are loopback, private or link-local (the API server
  // refuses any other such URL): host names or IP addresses, comma-separated, matched against the URL's host.
  TANDEM_MCP_PRIVATE_HOSTS: z
    .string()
    .optional()
    .transform((v) => (v ?? '').split(',').map((h) => h.trim()).filter(Boolean))
    .refine((hosts) => hosts.every((h) => isIP(h.replace(/^\[(.*)\]$/, '$1')) !== 0 || /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/.test(h)), {
      error: 'expected host names or IP addresses, comma-separated, without scheme, port or path (e.g. 127.0.0.1,mcp.internal)',
    }),
  TANDEM_API_ADDRESS: z
    .string()
    .regex(/^[^:]+:\d+$/, { error: 'expected host:port, e.g. 127.0.0.1:8787' })
    .default('127.0.0.1:8787'),
  TANDEM_API_KEYS: z.string().optional(),
  TANDEM_HANDS_DIR: z.string().optional(),
  TANDEM_WORKSPACE_QUOTA: z.enum(['auto', 'on', 'off']).default('auto'),
  TANDEM_WORKSPACE_MB: z.coerce.number().int().min(16).default(4096),
  TANDEM_USERNS_REMAP_USER: z.string().min(1).default('dockremap'),
  TANDEM_WORKER_ROLE: z.enum(['all', 'brain', 'hands']).default('all'),
  TANDEM_HANDS_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,60}$/, { error: 'expected 1 to 60 of A-Z a-z 0-9 . _ -' })
    .optional(),
  TANDEM_SNAPSHOT_RETENTION_H: z.coerce.number().min(0).default(168),
  TANDEM_WARM_CONTAINERS: z.coerce.number().int().min(0).max(32).default(2),
  TANDEM_EGRESS_HOST_MAP: z
    .string()
    .regex(/^([^=,\s]+=[^=,\s]+)(,[^=,\s]+=[^=,\s]+)*$/, { message: 'expected name=address[,name=address...]' })
    .optional(),
  // The snapshot store shared by the hands hosts (blobStoreFromEnv in src/activities/sandbox/blob-store.ts): unset for
  // the default directory, an absolute path or file:///path, or s3://bucket/prefix at TANDEM_S3_ENDPOINT (unset: AWS)
  // with the vault secret TANDEM_S3_CREDENTIAL ("<key id>:<secret>") or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
  TANDEM_SNAPSHOT_STORE: z
    .string()
    .regex(/^(\/|file:\/\/|s3:\/\/)/, { error: 'expected an absolute directory path, file:///path or s3://bucket/prefix' })
    .optional(),
  TANDEM_S3_ENDPOINT: z
    .string()
    .regex(/^https?:\/\/[^/?#\s]+\/?$/, { error: 'expected http(s)://host[:port], e.g. http://127.0.0.1:9000' })
    .optional(),
  TANDEM_S3_REGION: z.string().min(1).default('us-east-1'),
  TANDEM_S3_CREDENTIAL: z.string().min(1).optional(),
  TANDEM_PAYLOAD_KEY: z.string().optional(),
  // The token callers of `tandem codec-server` show; URL-safe, as the Temporal UI sends it as a path segment.
  TANDEM_CODEC_TOKEN: z
    .string()
    .regex(/^[A-Za-z0-9._~-]{16,}$/, { error: 'expected at least 16 characters of A-Z a-z 0-9 . _ ~ - (e.g. openssl rand -hex 24)' })
    .optional(),
});

/** Validated runtime configuration. */
export type RuntimeConfig = z.infer<typeof schema> & { TEMPORAL_ADDRESS: string; TEMPORAL_NAMESPACE: string };

/**
 * The deployment this worker's sandboxes belong to: `TANDEM_SANDBOX_SCOPE`, else the Temporal namespace and address.
 * Deployments that share a Docker host never reap each other's sandboxes.
 */
export function sandboxScope(config: RuntimeConfig): string {
  return config.TANDEM_SANDBOX_SCOPE ?? `${config.TEMPORAL_NAMESPACE}@${config.TEMPORAL_ADDRESS}`;
}

/** Reads the configuration; a bad value stops with one line per problem. */
export function loadRuntimeConfig(env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n');
    throw new Error(`invalid configuration:\n${problems}`);
  }
  const temporal = temporalSettings({ address: parsed.data.TEMPORAL_ADDRESS, namespace: parsed.data.TEMPORAL_NAMESPACE }, env);
  return { ...parsed.data, TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace };
}
