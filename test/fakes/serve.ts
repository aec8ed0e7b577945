/**
 * CLI for the scripted Messages API fake (offline demo / benchmarks).
 *
 *   tsx test/fakes/serve.ts --script file.json [--port 0] [--host 127.0.0.1]
 *       [--latency MS] [--ttft MS] [--chunk-delay MS] [--loop]
 *
 * First stdout line: `listening http://127.0.0.1:PORT`. Runs until killed.
 * The script file is `{ "steps": [ Reply | Fault, ... ] }` (see messages-server.ts).
 */
import { parseArgs } from 'node:util';
import { loadScriptFile, startMessagesServer } from './messages-server.js';

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      script: { type: 'string' },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      latency: { type: 'string' },
      ttft: { type: 'string' },
      'chunk-delay': { type: 'string' },
      loop: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.script) throw new Error('usage: serve.ts --script file.json [--port 0] [--loop]');
  const script = await loadScriptFile(values.script);
  const latencyMs = num(values.latency, 'latency');
  const ttftMs = num(values.ttft, 'ttft');
  const chunkDelayMs = num(values['chunk-delay'], 'chunk-delay');
  const server = await startMessagesServer({
    script,
    port: num(values.port, 'port') ?? 0,
    host: values.host ?? '127.0.0.1',
    loop: values.loop ?? false,
    ...(latencyMs !== undefined ? { latencyMs } : {}),
    ...(ttftMs !== undefined ? { ttftMs } : {}),
    ...(chunkDelayMs !== undefined ? { chunkDelayMs } : {}),
  });
  process.stdout.write(`listening ${server.url}\n`);

  const shutdown = (): void => {
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

main().catch((e: unknown) => {
  process.stderr.write(`serve.ts: ${(e as Error)?.message ?? String(e)}\n`);
  process.exit(1);
});
