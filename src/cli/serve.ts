/** `tandem serve` (and `tandem dev --serve`): the Managed Agents HTTP API on this Temporal namespace. */
import type { RuntimeConfig } from '../config/env.js';
import { TandemClient } from '../client/index.js';
import { resolveApiKeys, startApiServer, type ApiServer } from '../server/index.js';
import { Vault } from '../vault/index.js';
import { blobStoreFromEnv, defaultStoreDir } from '../activities/sandbox/blob-store.js';

const log = (line: string) => console.error(`tandem: ${line}`);

/** Starts the API server on `listen` (host:port, default `TANDEM_API_ADDRESS`) and says where and with which key. */
export async function startServe(config: RuntimeConfig, listen?: string): Promise<ApiServer> {
  const address = listen ?? config.TANDEM_API_ADDRESS;
  const match = /^(.+):(\d+)$/.exec(address);
  if (!match) throw new Error(`--listen ${address}: expected host:port, e.g. 127.0.0.1:8787`);
  const tandem = await TandemClient.connect({
    address: config.TEMPORAL_ADDRESS,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TANDEM_TASK_QUEUE,
  });
  const vault = new Vault();
  const { keys, created } = resolveApiKeys({ TANDEM_API_KEYS: config.TANDEM_API_KEYS }, vault);
  const server = await startApiServer({
    files: blobStoreFromEnv(config, { defaultDir: defaultStoreDir(), vault }),
    tandem,
    keys,
    vault,
    host: match[1],
    port: Number(match[2]),
    mcpPrivateHosts: config.TANDEM_MCP_PRIVATE_HOSTS,
  });
  log(`Managed Agents API on ${server.url} (new Anthropic({ baseURL: '${server.url}', apiKey }))`);
  if (created) log(`created an API key, shown this once (kept in the vault as "tandem.api_key"): ${created}`);
  else if (!config.TANDEM_API_KEYS) log('API key: the one in the vault ("tandem.api_key"); set TANDEM_API_KEYS to choose your own');
  return server;
}

/** `tandem serve`: the API until SIGINT/SIGTERM (a worker runs elsewhere: `tandem dev` or `tandem worker`). */
export async function runServe(config: RuntimeConfig, listen?: string): Promise<void> {
  const server = await startServe(config, listen);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
}
