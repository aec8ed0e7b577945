/**
 * `tandem files put|ls|get|rm`: the files of the Files API, in the same store (`TANDEM_SNAPSHOT_STORE`, else the
 * default directory), read and written from this machine without the HTTP API.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { blobStoreFromEnv, defaultStoreDir } from '../activities/sandbox/blob-store.js';
import { loadRuntimeConfig } from '../config/env.js';
import { FileStore } from '../files/store.js';
import { defaultVaultPath, Vault } from '../vault/index.js';
import { action, connect, type Io } from './io.js';
import { forTerminal, jsonLine } from './terminal.js';

/** The file store the `Io`'s environment names, as `tandem serve` opens it. */
function openStore(io: Io): FileStore {
  const config = loadRuntimeConfig(io.env);
  return new FileStore(blobStoreFromEnv(config, { defaultDir: defaultStoreDir(), vault: new Vault(defaultVaultPath(io.env), io.env), env: io.env }));
}

/**
 * `tandem files put FILE`: stores a file and prints its metadata (its id, with `--json` all of it). With `--session`,
 * also mounts it in that running session (read-only, at `--mount-path` or /mnt/session/uploads/<file id>).
 */
export async function filesPutRun(
  io: Io,
  o: { path: string; mimeType?: string; json?: boolean; session?: string; mountPath?: string },
): Promise<void> {
  if (o.mountPath !== undefined && o.session === undefined) throw new Error('--mount-path mounts the file in a session: name it with --session');
  const data = await readFile(o.path).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`cannot read ${o.path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  const meta = await openStore(io).create({ filename: basename(o.path), mime_type: o.mimeType ?? 'application/octet-stream', data });
  if (o.session === undefined) return io.out(o.json ? jsonLine(meta) : meta.id);
  const resource = await (await connect(io)).addFile(o.session, meta.id, o.mountPath);
  if (o.json) return io.out(jsonLine({ file: meta, resource }));
  io.out(meta.id);
  io.err(forTerminal(`mounted in ${o.session} at ${resource.mount_path} (resource ${resource.id}), from its next tool call`));
}

/** `tandem files unmount SESSION RESOURCE`: removes a file from a running session (the file stays in the store). */
export async function filesUnmountRun(io: Io, o: { session: string; resource: string }): Promise<void> {
  await (await connect(io)).removeFile(o.session, o.resource);
  io.err(forTerminal(`removed ${o.resource} from ${o.session}, from its next tool call`));
}

/** `tandem files ls`: the files, newest first (with `--session`, those of one session). */
export async function filesLsRun(io: Io, o: { session?: string; json?: boolean }): Promise<void> {
  const files = await openStore(io).list(o.session);
  if (o.json) return io.out(jsonLine(files));
  if (files.length === 0) return io.err('no files');
  for (const f of files) io.out(forTerminal(`${f.id}  ${String(f.size_bytes).padStart(10)}  ${f.created_at}  ${f.filename}`));
}

/** `tandem files get ID`: writes a file's bytes to `output` (default its own name in this directory). */
export async function filesGetRun(io: Io, o: { id: string; output?: string }): Promise<void> {
  const { meta, data } = await openStore(io).content(o.id);
  const target = o.output ?? meta.filename;
  await writeFile(target, data, { flag: o.output ? 'w' : 'wx' }).catch((err: NodeJS.ErrnoException) => {
    throw new Error(err.code === 'EEXIST' ? `${target} exists; name another with -o` : `cannot write ${target}: ${err.message}`);
  });
  io.err(forTerminal(`wrote ${data.length} bytes to ${target}`));
}

/** `tandem files rm ID`: deletes a file. */
export async function filesRmRun(io: Io, o: { id: string }): Promise<void> {
  await openStore(io).delete(o.id);
  io.err(`deleted ${o.id}`);
}

/** Adds the `files` verb group to the program. */
export function addFileCommands(program: Command, io: Io): void {
  const files = program.command('files').description('the files of the Files API, in the store this machine shares with tandem serve');
  files
    .command('put')
    .description('store a file; prints its id')
    .argument('<path>')
    .option('--mime-type <type>', 'its MIME type (default application/octet-stream)')
    .option('--session <session-id>', 'also mount it in this running session (read-only)')
    .option('--mount-path <path>', 'where, under /mnt/session/uploads/ (default /mnt/session/uploads/<file id>)')
    .option('--json', 'print its metadata as JSON')
    .action(action(io, (path: string, o: { mimeType?: string; json?: boolean; session?: string; mountPath?: string }) => filesPutRun(io, { path, ...o })));
  files
    .command('unmount')
    .description('remove a file from a running session (the file stays in the store)')
    .argument('<session-id>')
    .argument('<resource-id>')
    .action(action(io, (session: string, resource: string) => filesUnmountRun(io, { session, resource })));
  files
    .command('ls')
    .description('list the files, newest first')
    .option('--session <session-id>', 'only the files of this session')
    .option('--json', 'a JSON array')
    .action(action(io, (o: { session?: string; json?: boolean }) => filesLsRun(io, o)));
  files
    .command('get')
    .description("write a file's bytes (to its own name here, or -o)")
    .argument('<file-id>')
    .option('-o, --output <path>', 'where to write it (replaced if it exists)')
    .action(action(io, (id: string, o: { output?: string }) => filesGetRun(io, { id, ...o })));
  files
    .command('rm')
    .description('delete a file')
    .argument('<file-id>')
    .action(action(io, (id: string) => filesRmRun(io, { id })));
}
