/**
 * How clients and workers reach Temporal: the SDK's own environment configuration (`@temporalio/envconfig`), so
 * `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, `TEMPORAL_GRPC_META_*`,
 * `TEMPORAL_PROFILE` and the `temporal.toml` profile file work the same as with the `temporal` CLI and other SDKs.
 */
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';

/** Where Temporal is when nothing says otherwise: the dev server of `tandem dev`. */
export const DEFAULT_TEMPORAL_ADDRESS = '127.0.0.1:7233';

/** Connection settings for both the client `Connection` and the worker's `NativeConnection`. */
export interface TemporalSettings {
  address: string;
  namespace: string;
  /** Address, TLS, API key and gRPC metadata, as the SDK's env config resolved them. */
  connection: NativeConnectionOptions & { address: string };
}

/**
 * Resolves the connection settings from `env` (and the profile file it points at); `overrides` (explicit options,
 * or a validated runtime config) win over the environment.
 */
export function temporalSettings(
  overrides: { address?: string; namespace?: string } = {},
  env: NodeJS.ProcessEnv = process.env,
): TemporalSettings {
  const vars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  let loaded: ReturnType<typeof loadClientConnectConfig>;
  try {
    loaded = loadClientConnectConfig({ overrideEnvVars: vars });
  } catch (err) {
    throw new Error(`the Temporal connection settings cannot be read: ${(err as Error).message}`);
  }
  const address = overrides.address ?? loaded.connectionOptions.address ?? DEFAULT_TEMPORAL_ADDRESS;
  const namespace = overrides.namespace ?? loaded.namespace ?? 'default';
  return { address, namespace, connection: { ...loaded.connectionOptions, address } };
}
