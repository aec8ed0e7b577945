import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Vault, VaultError, envVarFor } from '../../src/vault/index.js';

const run = promisify(execFile);
const tandem = join(import.meta.dirname, '../../bin/tandem');

describe('vault', () => {
  it('keeps secrets in a 0600 file and falls back to TANDEM_SECRET_*', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-vault-'));
    const path = join(dir, 'sub', 'vault.json');
    const v = new Vault(path, { TANDEM_SECRET_GH_TOKEN: 'from-env' });
    v.set('deploy-key', 's3cret');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'sub')).mode & 0o777).toBe(0o700);
    expect(v.get('deploy-key')).toBe('s3cret');
    expect(v.get('gh_token')).toBe('from-env');
    expect(envVarFor('gh-token')).toBe('TANDEM_SECRET_GH_TOKEN');
    expect(v.missing(['deploy-key', 'gh-token', 'nope'])).toEqual(['nope']);
    expect(() => v.require('nope')).toThrow(/no secret "nope".*tandem vault set nope/);
    expect(JSON.stringify(v.list())).not.toContain('s3cret');
    expect(v.remove('deploy-key')).toBe(true);
    expect(v.remove('deploy-key')).toBe(false);
    expect(() => v.set('1bad name', 'x')).toThrow(VaultError);
  });

  it('refuses a vault file other users can read', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tandem-vault-')), 'vault.json');
    writeFileSync(path, JSON.stringify({ version: 1, secrets: {} }));
    chmodSync(path, 0o644);
    expect(() => new Vault(path, {}).list()).toThrow(/chmod 600/);
  });

  it('tandem vault set|list|rm never prints a value', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tandem-vault-')), 'vault.json');
    const env = { ...process.env, TANDEM_VAULT_FILE: path };
    const set = run(tandem, ['vault', 'set', 'api-token'], { env });
    set.child.stdin!.end('canary-value-123\n');
    const { stdout: setOut, stderr: setErr } = await set;
    expect(setErr).toContain('stored secret api-token');
    expect(JSON.parse(readFileSync(path, 'utf8')).secrets['api-token'].value).toBe('canary-value-123');
    const list = await run(tandem, ['vault', 'list', '--json'], { env });
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ name: 'api-token', source: 'file' })]);
    for (const out of [setOut, setErr, list.stdout, list.stderr]) expect(out).not.toContain('canary-value');
    await run(tandem, ['vault', 'rm', 'api-token'], { env });
    const err = await run(tandem, ['vault', 'rm', 'api-token'], { env }).catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 1, stderr: expect.stringContaining('has no secret "api-token"') });
  });
});

describe('vault names', () => {
  it('does not mistake object built-ins for secrets', () => {
    const v = new Vault(join(mkdtempSync(join(tmpdir(), 'tandem-vault-')), 'vault.json'), {});
    v.set('real', 'x');
    expect(v.missing(['toString', 'constructor', 'real'])).toEqual(['toString', 'constructor']);
    expect(v.get('toString')).toBeUndefined();
    expect(v.remove('constructor')).toBe(false);
  });
});

describe('vault writers', () => {
  it('loses no secret when several processes write at once', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tandem-vault-')), 'vault.json');
    const script = `import { Vault } from ${JSON.stringify(join(import.meta.dirname, '../../src/vault/index.ts'))};
      const v = new Vault(${JSON.stringify(path)}, {});
      for (let i = 0; i < 100; i++) v.set('p' + process.argv.at(-1) + '-' + i, 'x');`;
    await Promise.all(
      [0, 1, 2, 3].map((n) => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, String(n)])),
    );
    expect(new Vault(path, {}).list().filter((s) => s.source === 'file')).toHaveLength(400);
  });
});
