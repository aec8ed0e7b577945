/**
 * Process-wide telemetry of workers: the Temporal Runtime with a Prometheus endpoint (`TANDEM_METRICS_ADDRESS`)
 * that serves the SDK's metrics and Tandem's own (emitted from activities through the same meter), and logs as
 * text or JSON lines (`TANDEM_LOG_FORMAT=json`) at `TANDEM_LOG_LEVEL`.
 */
import { format } from 'node:util';
import { DefaultLogger, makeTelemetryFilterString, Runtime, type LogEntry, type LogLevel } from '@temporalio/worker';
import { forTerminal, jsonLine } from './cli/terminal.js';

const LEVELS: LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

/** Whether logs are JSON lines. */
export function jsonLogs(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TANDEM_LOG_FORMAT === 'json';
}

/** One JSON log line (what `TANDEM_LOG_FORMAT=json` prints). */
export function jsonLogLine(entry: { level: string; message: string; timestampNanos?: bigint; meta?: object }): string {
  const ms = entry.timestampNanos === undefined ? Date.now() : Number(entry.timestampNanos / 1_000_000n);
  const meta = entry.meta ?? {};
  return jsonLine({ time: new Date(ms).toISOString(), level: entry.level, message: entry.message, ...meta }, (_k, v: unknown) =>
    typeof v === 'bigint' ? v.toString() : v instanceof Error ? { name: v.name, message: v.message } : v,
  );
}

/**
 * One text log line, as the SDK's default logger writes it, made safe for a terminal: failures logged by the worker
 * quote what models, tools and sandboxes said, escape sequences included.
 */
export function textLogLine(entry: { level: string; message: string; timestampNanos: bigint; meta?: object }): string {
  const time = new Date(Number(entry.timestampNanos / 1_000_000n));
  const line = `${format(time)} [${entry.level}] ${entry.message}${entry.meta === undefined ? '' : ` ${format(entry.meta)}`}`;
  return forTerminal(line, { newlines: true, tabs: true });
}

/** Prints one of Tandem's own lines: `tandem: message`, or a JSON line with `TANDEM_LOG_FORMAT=json`. */
export function logLine(message: string, level: LogLevel = 'INFO', meta?: object): void {
  console.error(jsonLogs() ? jsonLogLine({ level, message, meta }) : forTerminal(`tandem: ${message}`, { newlines: true, tabs: true }));
}

/** Options of {@link installRuntime}. */
export interface RuntimeSetup {
  /** Log level when `TANDEM_LOG_LEVEL` is unset. */
  defaultLevel: LogLevel;
  /** Serve metrics when `TANDEM_METRICS_ADDRESS` is set (workers only: clients have nothing to export). */
  metrics: boolean;
}

/**
 * Installs the Temporal Runtime once per process, before any worker or native connection exists. Returns the
 * metrics address when an endpoint is served.
 */
export function installRuntime(setup: RuntimeSetup, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const wanted = (env.TANDEM_LOG_LEVEL ?? setup.defaultLevel).toUpperCase() as LogLevel;
  if (!LEVELS.includes(wanted)) throw new Error(`TANDEM_LOG_LEVEL must be one of ${LEVELS.join(', ')} (got "${env.TANDEM_LOG_LEVEL}")`);
  if (env.TANDEM_LOG_FORMAT && !['json', 'text'].includes(env.TANDEM_LOG_FORMAT))
    throw new Error(`TANDEM_LOG_FORMAT must be json or text (got "${env.TANDEM_LOG_FORMAT}")`);
  const logger = new DefaultLogger(wanted, (entry: LogEntry) =>
    process.stderr.write(`${jsonLogs(env) ? jsonLogLine(entry) : textLogLine(entry)}\n`),
  );
  const address = setup.metrics ? env.TANDEM_METRICS_ADDRESS : undefined;
  if (address !== undefined && !/^[^:]+:\d+$/.test(address))
    throw new Error(`TANDEM_METRICS_ADDRESS must be host:port, e.g. 127.0.0.1:9464 (got "${address}")`);
  Runtime.install({
    logger,
    telemetryOptions: {
      logging: { filter: makeTelemetryFilterString({ core: wanted === 'TRACE' ? 'TRACE' : 'WARN' }), forward: {} },
      ...(address ? { metrics: { prometheus: { bindAddress: address } } } : {}),
    },
  });
  return address;
}
