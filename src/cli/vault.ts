/**
 * `tandem vault set|list|rm`: manage the worker-side vault. Values are read from stdin or a hidden prompt (never
 * from argv, where `ps` would show them) and are never printed back.
 */
import type { Command } from 'commander';
import { defaultVaultPath, Vault, VaultError } from '../vault/index.js';
import { action, type Io } from './io.js';

async function readSecret(io: Io, name: string): Promise<string> {
  if (!io.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of io.stdin) chunks.push(Buffer.from(c));
    // One trailing newline is the shell's (echo, heredoc), not the secret's.
    return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  }
  // A terminal (the process's own): a prompt, and the value typed without echo.
  process.stderr.write(`value of ${name} (not shown): `);
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  let value = '';
  try {
    for await (const chunk of stdin) {
      for (const ch of (chunk as Buffer).toString('utf8')) {
        if (ch === '\r' || ch === '\n') return value;
        if (ch === '\u0003') throw new VaultError('cancelled');
        if (ch === '\u007f') value = value.slice(0, -1);
        else value += ch;
      }
    }
    return value;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}

const openVault = (io: Io) => new Vault(defaultVaultPath(io.env), io.env);

/** `tandem vault set NAME`: stores a secret read from stdin or a hidden prompt. */
export async function vaultSetRun(io: Io, o: { name: string }): Promise<void> {
  const v = openVault(io);
  const existed = v.list().some((s) => s.name === o.name && s.source === 'file');
  v.set(o.name, await readSecret(io, o.name));
  io.err(`${existed ? 'updated' : 'stored'} secret ${o.name} in ${v.path}`);
}

/** `tandem vault list`: the secrets' names and where each comes from, never their values. */
export function vaultListRun(io: Io, o: { json?: boolean }): void {
  const secrets = openVault(io).list();
  if (o.json) return io.out(JSON.stringify(secrets));
  if (secrets.length === 0) return io.err('the vault is empty; add a secret with `tandem vault set NAME`');
  for (const s of secrets) io.out(`${s.name}\t${s.source}\t${s.updated_at ?? ''}`);
}

/** `tandem vault rm NAME`: removes a secret from the vault file. */
export function vaultRmRun(io: Io, o: { name: string }): void {
  const v = openVault(io);
  if (!v.remove(o.name)) throw new VaultError(`the vault file ${v.path} has no secret "${o.name}"`);
  io.err(`removed secret ${o.name}`);
}

/** Adds the `vault` verb group to the program. */
export function addVaultCommands(program: Command, io: Io): void {
  const vault = program
    .command('vault')
    .description('manage the worker-side vault of named secrets (TANDEM_VAULT_FILE, default ~/.config/tandem/vault.json)');

  vault
    .command('set')
    .description('store a secret; the value comes from stdin or a hidden prompt, never from the command line')
    .argument('<name>')
    .action(action(io, (name: string) => vaultSetRun(io, { name })));

  vault
    .command('list')
    .alias('ls')
    .description('list secret names (never values)')
    .option('--json', 'JSON output')
    .action(action(io, (o: { json?: boolean }) => vaultListRun(io, o)));

  vault
    .command('rm')
    .description('remove a secret from the vault file')
    .argument('<name>')
    .action(action(io, (name: string) => vaultRmRun(io, { name })));
}
