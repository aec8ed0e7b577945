/**
 * Tandem's own metrics, recorded around the activities through the activity context's metric meter, so they are
 * served by the same Prometheus endpoint as the SDK's (`TANDEM_METRICS_ADDRESS`): time to first token, model
 * latency, tokens in and out, tool latency by tool, provisioning time, sandbox losses. The activities themselves
 * do not change: this layer reads their results and failures.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, type MetricMeter } from '@temporalio/common';
import { Failure } from '../shared/failures.js';
import { ActivityNames } from '../shared/names.js';
import type { CallModelResult } from '../shared/types.js';

/** Metric names (the exporter may add its prefix, `temporal_` by default). */
export const Metrics = {
  ttft: 'tandem_model_ttft',
  modelLatency: 'tandem_model_latency',
  modelErrors: 'tandem_model_errors',
  tokensIn: 'tandem_model_input_tokens',
  tokensOut: 'tandem_model_output_tokens',
  toolLatency: 'tandem_tool_latency',
  toolErrors: 'tandem_tool_errors',
  provision: 'tandem_sandbox_provision_latency',
  sandboxLost: 'tandem_sandbox_lost',
} as const;

function instruments(meter: MetricMeter) {
  return {
    ttft: meter.createHistogram(Metrics.ttft, 'int', 'ms', 'time from the start of callModel to the first streamed token'),
    modelLatency: meter.createHistogram(Metrics.modelLatency, 'int', 'ms', 'duration of a callModel attempt'),
    modelErrors: meter.createCounter(Metrics.modelErrors, '1', 'failed callModel attempts by failure type'),
    tokensIn: meter.createCounter(Metrics.tokensIn, 'tokens', 'input tokens (cache reads and writes included)'),
    tokensOut: meter.createCounter(Metrics.tokensOut, 'tokens', 'output tokens'),
    toolLatency: meter.createHistogram(Metrics.toolLatency, 'int', 'ms', 'duration of a tool call in the sandbox, by tool'),
    toolErrors: meter.createCounter(Metrics.toolErrors, '1', 'tool calls that failed, by tool and failure type'),
    provision: meter.createHistogram(Metrics.provision, 'int', 'ms', 'time to create or find a running sandbox'),
    sandboxLost: meter.createCounter(Metrics.sandboxLost, '1', 'sandboxes found dead, paused or unresponsive during a call'),
  };
}

const cache = new WeakMap<MetricMeter, ReturnType<typeof instruments>>();

function current(): ReturnType<typeof instruments> | undefined {
  let meter: MetricMeter;
  try {
    meter = Context.current().metricMeter;
  } catch {
    return undefined; // called outside an activity (unit tests)
  }
  let m = cache.get(meter);
  if (!m) cache.set(meter, (m = instruments(meter)));
  return m;
}

const failureType = (err: unknown) => (err instanceof ApplicationFailure && err.type ? err.type : 'unknown');

type Activity = (...args: never[]) => Promise<unknown>;

/** Wraps the activities so that each records its metrics; names and signatures stay the same. */
export function withMetrics<T extends Record<string, Activity>>(activities: T): T {
  const wrap =
    <F extends Activity>(fn: F, onResult: (args: Parameters<F>, r: Awaited<ReturnType<F>>) => void, onError: (args: Parameters<F>, err: unknown) => void) =>
    (async (...args: Parameters<F>) => {
      try {
        const r = (await fn(...args)) as Awaited<ReturnType<F>>;
        onResult(args, r);
        return r;
      } catch (err) {
        onError(args, err);
        throw err;
      }
    }) as F;
  const out: Record<string, Activity> = { ...activities };
  const callModel = activities[ActivityNames.callModel];
  if (callModel) {
    out[ActivityNames.callModel] = wrap(
      callModel,
      (_a, r) => {
        const m = current();
        const res = r as CallModelResult;
        if (!m) return;
        const tags = { model: res.model };
        if (res.ttft_ms !== null) m.ttft.record(Math.max(0, Math.round(res.ttft_ms)), tags);
        m.modelLatency.record(Math.max(0, Math.round(res.duration_ms)), tags);
        const u = res.usage;
        m.tokensIn.add(u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens, tags);
        m.tokensOut.add(u.output_tokens, tags);
      },
      (_a, err) => current()?.modelErrors.add(1, { type: failureType(err) }),
    );
  }
  const execute = activities[ActivityNames.execute];
  if (execute) {
    out[ActivityNames.execute] = wrap(
      execute,
      (a, r) => {
        const m = current();
        const tool = (a[0] as unknown as { name: string }).name;
        const res = r as { duration_ms: number; is_error: boolean };
        m?.toolLatency.record(Math.max(0, Math.round(res.duration_ms)), { tool, is_error: res.is_error });
        if (res.is_error) m?.toolErrors.add(1, { tool, type: 'Tool.Error' });
      },
      (a, err) => {
        const m = current();
        const type = failureType(err);
        m?.toolErrors.add(1, { tool: (a[0] as unknown as { name: string }).name, type });
        if (type === Failure.SandboxLost) m?.sandboxLost.add(1);
      },
    );
  }
  const provision = activities[ActivityNames.provision];
  if (provision) {
    out[ActivityNames.provision] = wrap(
      provision,
      (_a, r) => current()?.provision.record(Math.max(0, Math.round((r as { duration_ms: number }).duration_ms))),
      (_a, err) => {
        if (failureType(err) === Failure.SandboxLost) current()?.sandboxLost.add(1);
      },
    );
  }
  return out as T;
}
