/**
 * Runs the `tandem` command as a user does (`bin/tandem` in a process of its own), or in the test's own process
 * (`runCli` on buffers: the same verbs, without a process start).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { runCli } from '../../src/cli/index.js';
import type { Io } from '../../src/cli/io.js';

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

/** An `Io` on buffers, with `env` over this process's environment (colours off), and what was written to it. */
export function bufferIo(env: Record<string, string> = {}, input?: string): { io: Io; stdout: () => string; stderr: () => string } {
  let stdout = '';
  let stderr = '';
  const io: Io = {
    out: (line) => (stdout += `${line}\n`),
    err: (line) => (stderr += `${line}\n`),
    isTTY: false,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdin: Readable.from(input === undefined ? [] : [input]),
  };
  return { io, stdout: () => stdout, stderr: () => stderr };
}

/** Runs `tandem <args>` in this process with `env` over this process's environment (colours off). */
export async function runTandemHere(args: string[], env: Record<string, string> = {}, input?: string): Promise<CliRun> {
  const { io, stdout, stderr } = bufferIo(env, input);
  const code = await runCli(args, io);
  return { code, stdout: stdout(), stderr: stderr() };
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
  ['files'],
  ['files', 'put'],
  ['files', 'ls'],
  ['files', 'get'],
  ['files', 'rm'],
  ['files', 'unmount'],
];
