/**
 * A session's files on its hands host, around each tool call:
 *
 * - before it, `sync` writes the session's file resources into the slot's `uploads/` (bound read-only at
 *   /mnt/session/uploads) from the file store, and removes the ones no longer mounted. The sandbox cannot write
 *   there, so the host's own writes follow no path the sandbox made.
 * - after it, `publish` puts what the agent left under `outputs/` (/mnt/session/outputs) into the file store as the
 *   session's files (`scope: {type: session, id}`), each under a stable id, and deletes the ones it removed. That
 *   directory is the sandbox's: it is walked through directory descriptors opened without following links, and only
 *   regular files are read, so a link or a swapped directory never leads the host's reads elsewhere.
 *
 * What each did last is kept beside the slot (`uploads.json`, `outputs.json`), out of the sandbox's reach, so a call
 * that changed nothing costs a directory walk.
 */
import { chmodSync, closeSync, fstatSync, lstatSync, mkdirSync, opendirSync, openSync, readFileSync, readSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { FileStore, FileStoreError, outputFileId } from '../../files/store.js';
import { UPLOADS_DIR } from '../../shared/files.js';
import type { FileResource, PinnedSkill } from '../../shared/types.js';
import type { SkillStore } from '../../files/skills.js';
import type { Slot } from './slot.js';
import { O_DIR, O_FILE } from './snapshots.js';


/** Bounds of publishing a session's outputs. */
export interface OutputLimits {
  /** Entries (files and directories) walked under outputs/; the rest are not published. */
  maxEntries: number;
  /** Directory depth walked. */
  maxDepth: number;
  /** Bytes of one output file: a larger one is not read (the worker holds a file whole while it publishes it). */
  maxFileBytes: number;
}

const DEFAULT_LIMITS: OutputLimits = { maxEntries: 1000, maxDepth: 16, maxFileBytes: 64 * 1024 * 1024 };

/** What `outputs.json` keeps of a published file: enough to see that it changed. */
interface Published {
  size: number;
  mtime: string;
  ino: string;
}

/** Types of common output files by extension; anything else is `application/octet-stream`. */
const MIME: Record<string, string> = {
  '.txt': 'text/plain',
  '.md': 'text/markdown',
  '.csv': 'text/csv',
  '.json': 'application/json',
  '.html': 'text/html',
  '.xml': 'application/xml',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
  '.pdf': 'application/pdf',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.svg': 'image/svg+xml',
  '.zip': 'application/zip',
  '.tar': 'application/x-tar',
  '.gz': 'application/gzip',
};

export class SessionFilesOnHost {
  private readonly limits: OutputLimits;

  constructor(
    private readonly store: FileStore,
    private readonly skills?: SkillStore,
    limits: Partial<OutputLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /**
   * Makes `skills/` hold exactly the files of `wanted`, each skill in a directory of its name. A skill whose version
   * is gone from the store is an error (the call is retried): a session's skills are pinned, and must be there.
   */
  async syncSkills(slot: Slot, wanted: readonly PinnedSkill[]): Promise<void> {
    const skills = this.skills;
    const entries = wanted.map((s) => ({ rel: s.name, key: `${s.skill_id}@${s.version}`, skill: s }));
    await reconcile(join(slot.dir, 'skills.json'), slot.skills, entries, async ({ skill }, dir) => {
      if (!skills) throw new Error('this hands host has no skill store, and the session has skills');
      for (const f of await skills.files(skill.skill_id, skill.version)) {
        const target = join(dir, f.path);
        if (!target.startsWith(`${dir}/`)) continue; // paths were checked at upload; never written outside anyway
        mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
        writeFileSync(target, f.data, { mode: 0o644 });
      }
      return true;
    });
  }

  /**
   * Makes `uploads/` hold exactly `wanted`. Returns a note for the model about files that could not be mounted
   * (deleted or expired in the file store), or undefined.
   */
  async sync(slot: Slot, wanted: readonly FileResource[]): Promise<string | undefined> {
    const missing: string[] = [];
    const entries = wanted.map((f) => ({ rel: f.mount_path.slice(UPLOADS_DIR.length + 1), key: f.file_id, file: f }));
    await reconcile(join(slot.dir, 'uploads.json'), slot.uploads, entries, async ({ file: f }, target) => {
      const file = await this.store.content(f.file_id).catch((err: unknown) => {
        if (err instanceof FileStoreError && err.status === 404) return undefined;
        throw err;
      });
      if (!file) {
        missing.push(`${f.file_id} (at ${f.mount_path})`);
        return false;
      }
      mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
      const tmp = `${target}.tandem-${process.pid}`;
      writeFileSync(tmp, file.data, { mode: 0o644 });
      chmodSync(tmp, 0o644);
      renameSync(tmp, target);
      return true;
    });
    return missing.length
      ? `[tandem: these session files are gone from the file store (deleted or expired) and are not mounted: ${missing.join(', ')}]`
      : undefined;
  }

  /**
   * Publishes the session's outputs: new and changed files are put into the file store, removed ones deleted.
   * Returns a note for the model when something could not be published (too many entries, a file too large).
   */
  async publish(slot: Slot, sessionId: string): Promise<string | undefined> {
    const manifestPath = join(slot.dir, 'outputs.json');
    const had = readJson<Record<string, Published>>(manifestPath) ?? {};
    const now: Record<string, Published> = {};
    const problems: string[] = [];
    let entries = 0;
    const walk = async (fd: number, rel: string, depth: number): Promise<void> => {
      const base = `/proc/self/fd/${fd}`;
      // Names are read no further than the entries left: a directory of a million files costs what the limit allows.
      for (const name of namesOf(base, this.limits.maxEntries - entries + 1)) {
        if (++entries > this.limits.maxEntries) {
          if (entries === this.limits.maxEntries + 1)
            problems.push(`/mnt/session/outputs holds more than ${this.limits.maxEntries} entries; the rest are not published`);
          return;
        }
        const path = `${base}/${name}`;
        const relPath = rel ? `${rel}/${name}` : name;
        let st;
        try {
          st = lstatSync(path, { bigint: true });
        } catch {
          continue; // gone meanwhile
        }
        if (st.isDirectory()) {
          if (depth >= this.limits.maxDepth) continue;
          let child: number;
          try {
            child = openSync(path, O_DIR);
          } catch {
            continue; // swapped for something else meanwhile: left out, never followed
          }
          try {
            await walk(child, relPath, depth + 1);
          } finally {
            closeSync(child);
          }
          continue;
        }
        if (!st.isFile()) continue; // links, sockets, devices: not outputs
        const seen: Published = { size: Number(st.size), mtime: String(st.mtimeNs), ino: String(st.ino) };
        const before = had[relPath];
        if (before && before.size === seen.size && before.mtime === seen.mtime && before.ino === seen.ino) {
          now[relPath] = before;
          continue;
        }
        const maxBytes = Math.min(this.store.maxBytes, this.limits.maxFileBytes);
        const data = readRegular(path, maxBytes);
        if (data === undefined) continue;
        if (data === 'too large') {
          problems.push(`${relPath} is larger than ${maxBytes} bytes and was not published`);
          continue;
        }
        await this.store.put(outputFileId(sessionId, relPath), {
          filename: relPath,
          mime_type: MIME[extname(relPath).toLowerCase()] ?? 'application/octet-stream',
          data,
          scope: { type: 'session', id: sessionId },
        });
        now[relPath] = seen;
      }
    };
    let root: number;
    try {
      root = openSync(slot.outputs, O_DIR);
    } catch {
      return undefined; // no outputs directory (a sandbox made before sessions had one)
    }
    try {
      await walk(root, '', 0);
    } finally {
      closeSync(root);
    }
    // Past the entry limit, what was not walked is not taken as removed.
    if (entries <= this.limits.maxEntries)
      for (const rel of Object.keys(had)) if (!(rel in now)) await this.store.delete(outputFileId(sessionId, rel)).catch(() => undefined);
    if (JSON.stringify(had) !== JSON.stringify(now)) writeFileSync(manifestPath, JSON.stringify(now));
    return problems.length ? `[tandem: ${problems.join('; ')}]` : undefined;
  }
}

/**
 * Makes the host-written directory `root` hold exactly `wanted` (each at `rel`, of version `key`), as recorded in the
 * manifest at `manifestPath`: an entry already there at its key stays, another is replaced by `write` (which returns
 * false for one it cannot write, left out), and the entries no longer wanted are removed with their emptied parents.
 */
async function reconcile<T extends { rel: string; key: string }>(
  manifestPath: string,
  root: string,
  wanted: readonly T[],
  write: (entry: T, target: string) => Promise<boolean>,
): Promise<void> {
  const had = readJson<Record<string, string>>(manifestPath) ?? {};
  if (wanted.length === 0 && Object.keys(had).length === 0) return;
  const now: Record<string, string> = {};
  for (const entry of wanted) {
    const target = join(root, entry.rel);
    if (had[entry.rel] === entry.key && exists(target)) {
      now[entry.rel] = entry.key;
      continue;
    }
    rmSync(target, { recursive: true, force: true });
    if (await write(entry, target)) now[entry.rel] = entry.key;
  }
  for (const rel of Object.keys(had)) {
    if (rel in now) continue;
    rmSync(join(root, rel), { recursive: true, force: true });
    pruneEmpty(root, dirname(join(root, rel)));
  }
  if (!sameKeys(had, now)) writeFileSync(manifestPath, JSON.stringify(now));
}

/**
 * The bytes of the regular file at `path` (opened without following a link), read to its size and no further: past
 * `max` bytes, 'too large'; undefined when it is no regular file by the time it is opened.
 */
function readRegular(path: string, max: number): Buffer | 'too large' | undefined {
  let fd: number;
  try {
    fd = openSync(path, O_FILE);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    if (st.size > max) return 'too large';
    const data = Buffer.alloc(st.size);
    let off = 0;
    while (off < data.length) {
      const n = readSync(fd, data, off, data.length - off, off);
      if (n === 0) break; // truncated meanwhile: what is there
      off += n;
    }
    return data.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/** At most `max` names of the directory at `path`, sorted (read one by one, never the whole listing at once). */
function namesOf(path: string, max: number): string[] {
  const names: string[] = [];
  const dir = opendirSync(path);
  try {
    for (let e = dir.readSync(); e && names.length < max; e = dir.readSync()) names.push(e.name);
  } finally {
    dir.closeSync();
  }
  return names.sort();
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function sameKeys(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/** Removes the empty directories from `dir` up to (not including) `root`. */
function pruneEmpty(root: string, dir: string): void {
  for (let d = dir; d.startsWith(`${root}/`); d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty, or gone
    }
  }
}
