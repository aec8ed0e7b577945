/**
 * Determinism guard: every saved session history replays against the current workflow code. A change that would
 * break running sessions fails here. Add histories with `TANDEM_RECORD_HISTORIES=1 npx vitest run test/integration`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../helpers/env.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

describe('replay of saved session histories', () => {
  it('has saved histories to replay', () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
  });

  it.each(files)('%s replays without nondeterminism', async (file) => {
    // Histories saved with their session's ID replay under it (child session IDs derive from it).
    const { workflowId, ...history } = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { workflowId?: string };
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, workflowId ?? file);
  });
});
