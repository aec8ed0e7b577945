/**
 * The Temporal floor of time to first token: a workflow that does nothing but run one activity that streams one
 * model call. Tandem's session does the same plus its own work (status, search attributes, reading the log).
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { FloorActivities } from './worker.js';

/** One model call in one activity, then done. */
export async function floorSession(system: string): Promise<void> {
  const { streamOnce } = proxyActivities<FloorActivities>({ startToCloseTimeout: '1 minute' });
  await streamOnce({ system, id: workflowInfo().workflowId });
}
