/** Runs the `tandem` command as a user does: `bin/tandem` in a process of its own. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

/** The repository root, where `bin/tandem` lives. */
export const repoRoot = join(import.meta.dirname, '..', '..');

/** The outcome of one `tandem` run. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tandem <args>` to completion with `env` over this process's environment (colours off). */
export function runTandem(args: string[], env: Record<string, string> = {}, input?: string): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'tandem'), ...args], {
      cwd: repoRoot,
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Every verb of the command, as the words that name it (`['agents', 'validate']`). */
export const VERBS: string[][] = [
  ['dev'],
  ['serve'],
  ['worker'],
  ['hands'],
  ['demo'],
  ['run'],
  ['start'],
  ['send'],
  ['interrupt'],
  ['confirm'],
  ['answer'],
  ['wake'],
  ['events'],
  ['rewind'],
  ['fork'],
  ['replay'],
  ['outcome'],
  ['ls'],
  ['show'],
  ['agents'],
  ['agents', 'validate'],
  ['vault'],
  ['vault', 'set'],
  ['vault', 'list'],
  ['vault', 'rm'],
  ['codec-server'],
];
