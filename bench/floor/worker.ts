/**
 * Worker process of the Temporal floor (see workflows.ts): the same SDKs and the same scripted model as a Tandem
 * worker, with none of Tandem's own work. Environment: TEMPORAL_ADDRESS, TANDEM_TASK_QUEUE, ANTHROPIC_BASE_URL.
 */
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';

const anthropic = new Anthropic({ maxRetries: 0, apiKey: 'bench-key', baseURL: process.env.ANTHROPIC_BASE_URL });

/** Streams one request; returns when it started and the time to its first content delta. */
async function streamOnce({ system }: { system: string; id: string }): Promise<{ started_at: string; ttft_ms: number | null }> {
  const started = Date.now();
  let ttft: number | null = null;
  const s = anthropic.messages.stream({ model: 'claude-sonnet-5-5', max_tokens: 1024, system, messages: [{ role: 'user', content: 'Say hello.' }] });
  s.on('streamEvent', (e) => {
    if (ttft === null && e.type === 'content_block_delta') ttft = Date.now() - started;
  });
  await s.finalMessage();
  return { started_at: new Date(started).toISOString(), ttft_ms: ttft };
}

const activities = { streamOnce };
/** The floor's activity interface (type-only import in the workflow). */
export type FloorActivities = typeof activities;

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233' });
  const worker = await Worker.create({
    connection,
    taskQueue: process.env.TANDEM_TASK_QUEUE ?? 'bench-floor',
    workflowsPath: fileURLToPath(new URL('./workflows.ts', import.meta.url)),
    activities,
  });
  process.once('SIGTERM', () => worker.shutdown());
  process.once('SIGINT', () => worker.shutdown());
  console.log(`floor worker: polling task queue "${worker.options.taskQueue}"`);
  await worker.run();
  await connection.close();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error(`floor worker: ${(err as Error).message}`);
    process.exit(1);
  });
}
