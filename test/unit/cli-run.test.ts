/**
 * The verbs as a program calls them: an options object and a run function, on an `Io` of buffers, with no parser
 * and no process. What needs no server (agent files, the vault, option checks made before connecting) runs here;
 * the verbs against a server are in test/integration/cli-verbs.test.ts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateRun } from '../../src/cli/agents.js';
import { eventsRun, replayRun } from '../../src/cli/history.js';
import { wholeNumber } from '../../src/cli/io.js';
import { lsRun } from '../../src/cli/sessions.js';
import { confirmRun, outcomeRun } from '../../src/cli/turns.js';
import { vaultListRun, vaultRmRun, vaultSetRun } from '../../src/cli/vault.js';
import { AgentFileError } from '../../src/config/agent.js';
import { bufferIo } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'tandem-cli-run-'));
// Nothing listens here: a verb that got as far as connecting would fail with "cannot reach Temporal".
const nowhere = { TEMPORAL_ADDRESS: '127.0.0.1:1' };

describe('verbs called with an options object', () => {
  it('agents validate: the OK line, the definition as JSON, and the file error for a bad file', async () => {
    const good = join(dir, 'good.yaml');
    writeFileSync(good, 'name: reader\nmodel: claude-sonnet-5-5\ntools:\n  - type: agent_toolset_20260401\n');
    const a = bufferIo();
    await validateRun(a.io, { file: good });
    expect(a.stdout()).toMatch(/^OK .*good\.yaml: agent reader, model claude-sonnet-5-5, tools bash /);
    const b = bufferIo();
    await validateRun(b.io, { file: good, json: true });
    expect(JSON.parse(b.stdout())).toMatchObject({ name: 'reader', model: 'claude-sonnet-5-5' });

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'name: reader\nmodel: 42\n');
    await expect(validateRun(bufferIo().io, { file: bad })).rejects.toThrow(AgentFileError);
  });

  it('vault set, list and rm on the vault file the Io names; the value is never written out', async () => {
    const env = { TANDEM_VAULT_FILE: join(dir, 'vault.json') };
    const set = bufferIo(env, 'canary-value-7f3a\n');
    await vaultSetRun(set.io, { name: 'deploy_key' });
    expect(set.stderr()).toContain('stored secret deploy_key');
    const list = bufferIo(env);
    vaultListRun(list.io, { json: true });
    expect(JSON.parse(list.stdout())).toEqual([expect.objectContaining({ name: 'deploy_key', source: 'file' })]);
    expect(set.stdout() + set.stderr() + list.stdout()).not.toContain('canary-value-7f3a');
    vaultRmRun(bufferIo(env).io, { name: 'deploy_key' });
    expect(() => vaultRmRun(bufferIo(env).io, { name: 'deploy_key' })).toThrow(/has no secret "deploy_key"/);
  });

  it('bad options are refused in one sentence that names the option, before any connection', async () => {
    const { io } = bufferIo(nowhere);
    await expect(eventsRun(io, { sessionId: 's', type: ['agent.nope'] })).rejects.toThrow(/^unknown event type agent\.nope; known: /);
    await expect(eventsRun(io, { sessionId: 's', limit: -1 })).rejects.toThrow('--limit takes a whole number of at least 0 (got "-1")');
    await expect(eventsRun(io, { sessionId: 's', tree: true, follow: true })).rejects.toThrow(/cannot be combined with --follow/);
    await expect(lsRun(io, { limit: 0 })).rejects.toThrow('--limit takes a whole number of at least 1 (got "0")');
    await expect(replayRun(io, { sessionIds: ['s'], agent: 'a.yaml', concurrency: 1.5 })).rejects.toThrow(
      '--concurrency takes a whole number of at least 1 (got "1.5")',
    );
    await expect(outcomeRun(io, { sessionId: 's', rubric: 'r.md', maxIterations: 21 })).rejects.toThrow(
      '--max-iterations takes a whole number from 1 to 20 (got "21")',
    );
    await expect(confirmRun(io, { sessionId: 's', toolUseId: 't', decision: 'maybe' })).rejects.toThrow('the decision is "allow" or "deny", not "maybe"');
  });

  it('a verb that needs the server says which address it could not reach', async () => {
    await expect(lsRun(bufferIo(nowhere).io, {})).rejects.toThrow(/^cannot reach Temporal at 127\.0\.0\.1:1 /);
  });

  it('wholeNumber reads command-line text and checks numbers alike', () => {
    const port = wholeNumber('--port', 1, 65535);
    expect(port('8888')).toBe(8888);
    expect(port(8888)).toBe(8888);
    for (const bad of ['', ' ', 'lots', '1e99', '0', '65536', '3.5'])
      expect(() => port(bad)).toThrow(`--port takes a whole number from 1 to 65535 (got ${JSON.stringify(bad)})`);
  });
});
