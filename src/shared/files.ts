/**
 * Rules of a session's file resources, shared by the API (which refuses a bad one with a 400 naming the field) and
 * the session workflow (whose update validator refuses it again, so nothing else can log one either).
 */
import type { FileResource } from './types.js';

/** Where a session's file resources are mounted, and where a mount path must lie. */
export const UPLOADS_DIR = '/mnt/session/uploads';
/** Files one session may have mounted at once. */
export const MAX_SESSION_FILES = 100;

/** A change of a session's files: one file added, or one removed by its resource id. */
export interface FilesChange {
  add?: FileResource;
  remove?: string;
}

/**
 * Why `path` cannot be a file's mount path, or undefined: it must be an absolute, normalized path strictly under
 * {@link UPLOADS_DIR} (no `.`/`..` parts, no empty parts, printable, at most 512 characters).
 */
export function mountPathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string' || path.length === 0) return 'must be an absolute path';
  if (path.length > 512) return 'must be at most 512 characters';
  if (/[\u0000-\u001f\u007f\\]/.test(path)) return 'must hold no control characters or backslashes';
  if (!path.startsWith(`${UPLOADS_DIR}/`))
    return `must lie under ${UPLOADS_DIR}/ (Tandem mounts session files there, read-only; the default is ${UPLOADS_DIR}/<file_id>)`;
  const parts = path.slice(UPLOADS_DIR.length + 1).split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return 'must be a normalized path, without empty, "." or ".." parts';
  return undefined;
}

/** Whether one mount path is the other or lies inside it (two files cannot be both a file and a directory). */
function overlaps(a: string, b: string): boolean {
  return a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}

/** Why `change` cannot be made to `files`, or undefined. */
export function filesChangeProblem(files: readonly FileResource[], change: FilesChange): string | undefined {
  const c = change as Partial<FilesChange> | null;
  if (!c || typeof c !== 'object' || (c.add === undefined) === (c.remove === undefined))
    return 'a files change adds one file or removes one';
  if (c.remove !== undefined) return files.some((f) => f.id === c.remove) ? undefined : `the session has no resource "${String(c.remove)}"`;
  const add = c.add!;
  if (add.type !== 'file' || typeof add.id !== 'string' || typeof add.file_id !== 'string') return 'the file resource is malformed';
  const problem = mountPathProblem(add.mount_path);
  if (problem) return `mount_path: ${problem}`;
  if (files.length >= MAX_SESSION_FILES) return `a session mounts at most ${MAX_SESSION_FILES} files; remove one first`;
  if (files.some((f) => f.id === add.id)) return `the session has a resource "${add.id}" already`;
  const clash = files.find((f) => overlaps(f.mount_path, add.mount_path));
  if (clash) return `mount_path: ${add.mount_path} overlaps ${clash.mount_path}, where ${clash.file_id} is mounted`;
  return undefined;
}
