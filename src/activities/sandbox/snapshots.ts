/**
 * Workspace snapshots: content-addressed and incremental, in a store shared by every hands host (blob-store.ts), so
 * a session's files outlive the host its sandbox ran on (DESIGN rule 12).
 *
 *   objects/<2 hex>/<sha256>        a file's bytes, or a directory's tree (gzip of canonical JSON)
 *   snapshots/<session key>/<root>  a snapshot of the session: its root tree, when, how much
 *   sessions/<session key>/ended    when the session ended (retention counts from it)
 *   hosts/<host id>                 what a hands host announces (placement reads it)
 *
 * A snapshot walks the workspace on the host. Each file is hashed once: a file whose inode, size, mtime and ctime
 * match what this process saw last keeps its hash (ctime cannot be set by the sandbox). Only new objects are
 * written, and only the trees of directories that changed, so the cost follows the bytes changed, not the
 * workspace's size. The snapshot id is the root tree's hash: an unchanged workspace gives the same id and writes
 * nothing.
 *
 * The workspace belongs to the sandbox, which may swap a directory for a symlink while the walk runs. So the walk
 * never resolves a path it did not open itself: each directory is opened with O_NOFOLLOW and its children are
 * reached through /proc/self/fd/<fd>, files are opened with O_NOFOLLOW and checked with fstat, and anything but a
 * regular file, a directory or a symlink (read, never followed) is left out. Nothing outside the workspace can
 * reach a snapshot, and so a restore, even on another host.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  fchownSync,
  fstatSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  symlinkSync,
  writeSync,
  type BigIntStats,
} from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { SnapshotResult } from '../../shared/types.js';
import type { BlobStore } from './blob-store.js';

/**
 * The result of taking a snapshot: its id (the root tree's hash), whether the workspace changed since the previous
 * snapshot of the session (when not, nothing was written), its files and bytes, and the bytes written to the store
 * (new objects, trees and the snapshot's record).
 */
export type SnapshotTaken = SnapshotResult;

/** The result of a restore. */
export interface SnapshotRestored {
  snapshot_id: string;
  files: number;
  bytes: number;
  duration_ms: number;
}

/** Owner of what a restore writes: the sandbox user as the host sees it. */
export interface FileOwner {
  uid: number;
  gid: number;
}

/** Bounds of one snapshot. */
export interface SnapshotLimits {
  /** Entries (files, directories, links) a workspace may hold to be snapshotted. */
  maxEntries: number;
  /** Longest symlink target kept. */
  maxLinkTarget: number;
}

const DEFAULT_LIMITS: SnapshotLimits = { maxEntries: 500_000, maxLinkTarget: 4096 };
/** Opens a directory of a sandbox's, never through a link (walks go by descriptor from there). */
export const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** Opens a file of a sandbox's, never through a link, without blocking on a FIFO. */
export const O_FILE = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
/** Objects written at once by a snapshot. */
const PARALLEL = 16;
/** Objects read at once by a restore: from S3 each is a round trip, and a restore waits for all of them. */
const RESTORE_PARALLEL = 64;
/** An object not referenced by any live snapshot is deleted only once it is this old (a snapshot may be writing it). */
const GRACE_MS = 60 * 60 * 1000;

/**
 * A tree entry: name, kind, mode, ref, size. Kinds: `f` a file stored as one object (ref: its hash), `F` a larger file
 * stored in chunks (ref: the hash of the list of its chunks' hashes, itself an object), `d` a directory (ref: its
 * tree), `l` a symlink (ref: its target).
 */
type Entry = [string, 'f' | 'F' | 'd' | 'l', number, string, number];

/** Files larger than this are stored in chunks of this size, so a snapshot never holds a whole large file. */
const CHUNK = 4 * 1024 * 1024;

interface FileState {
  ino: bigint;
  size: bigint;
  mtime: bigint;
  ctime: bigint;
  hash: string;
  chunked: boolean;
}

/** What this process knows of a session's workspace since its last snapshot or restore. */
interface SessionCache {
  files: Map<string, FileState>;
  /** Tree hashes this process has written or read (so an unchanged directory is not written again). */
  trees: Set<string>;
  root?: string;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const objectKey = (hash: string) => `objects/${hash.slice(0, 2)}/${hash}`;
/** The store's name for a session (ids may hold characters keys may not). */
export const sessionStoreKey = (sessionId: string) => sha256(`session\n${sessionId}`).slice(0, 32);

function treeBytes(entries: Entry[]): { hash: string; data: Buffer } {
  const json = JSON.stringify({ v: 1, e: entries });
  return { hash: sha256(`tandem-tree\n${json}`), data: gzipSync(json) };
}

/** Snapshots and restores workspaces into a shared store. */
export class Snapshots {
  private readonly sessions = new Map<string, SessionCache>();
  private readonly limits: SnapshotLimits;

  constructor(
    readonly store: BlobStore,
    limits: Partial<SnapshotLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /** Takes a snapshot of the workspace at `dir` (a host path) for `sessionId`. */
  async take(sessionId: string, dir: string): Promise<SnapshotTaken> {
    const started = Date.now();
    const cache = this.cacheOf(sessionId);
    const seen = new Map<string, FileState>();
    const stats = { files: 0, bytes: 0, written: 0, entries: 0 };
    const pending: Array<Promise<void>> = [];
    const put = async (key: string, data: Buffer) => {
      if (await this.store.has(key)) return;
      await this.store.put(key, data);
      stats.written += data.length;
    };
    const queue = async (job: () => Promise<void>) => {
      pending.push(job());
      if (pending.length >= PARALLEL) await Promise.all(pending.splice(0));
    };

    const walk = async (fd: number, rel: string): Promise<string> => {
      const base = `/proc/self/fd/${fd}`;
      const entries: Entry[] = [];
      for (const name of readdirSync(base).sort()) {
        if (++stats.entries > this.limits.maxEntries)
          throw new Error(`the workspace holds more than ${this.limits.maxEntries} entries; a snapshot would be too large`);
        if (stats.entries % 512 === 0) await new Promise((r) => setImmediate(r)); // let heartbeats through
        const path = `${base}/${name}`;
        const relPath = rel ? `${rel}/${name}` : name;
        let st: BigIntStats;
        try {
          st = lstatSync(path, { bigint: true });
        } catch {
          continue; // gone meanwhile
        }
        const mode = Number(st.mode & 0o7777n);
        if (st.isDirectory()) {
          let child: number;
          try {
            child = openSync(path, O_DIR);
          } catch {
            continue; // swapped for something else meanwhile: left out, never followed
          }
          try {
            entries.push([name, 'd', mode, await walk(child, relPath), 0]);
          } finally {
            closeSync(child);
          }
        } else if (st.isSymbolicLink()) {
          const target = readlinkSync(path);
          if (target.length <= this.limits.maxLinkTarget) entries.push([name, 'l', 0o777, target, 0]);
        } else if (st.isFile()) {
          const known = cache.files.get(relPath);
          let state: FileState | undefined =
            known && known.ino === st.ino && known.size === st.size && known.mtime === st.mtimeNs && known.ctime === st.ctimeNs
              ? known
              : undefined;
          if (!state) {
            state = await readFileAt(path, (hash, data) => queue(() => put(objectKey(hash), data)));
            if (!state) continue;
          }
          seen.set(relPath, state);
          stats.files++;
          stats.bytes += Number(state.size);
          entries.push([name, state.chunked ? 'F' : 'f', mode, state.hash, Number(state.size)]);
        }
      }
      const tree = treeBytes(entries);
      if (!cache.trees.has(tree.hash)) {
        await queue(() => put(objectKey(tree.hash), tree.data));
        cache.trees.add(tree.hash);
      }
      return tree.hash;
    };

    const rootFd = openSync(dir, O_DIR);
    let root: string;
    try {
      root = await walk(rootFd, '');
    } finally {
      closeSync(rootFd);
    }
    await Promise.all(pending);
    cache.files = seen;
    const changed = root !== cache.root;
    if (changed) {
      const record = Buffer.from(JSON.stringify({ session_id: sessionId, root, at: new Date().toISOString(), files: stats.files, bytes: stats.bytes }));
      await this.store.put(`snapshots/${sessionStoreKey(sessionId)}/${root}`, record);
      stats.written += record.length;
      cache.root = root;
    }
    return {
      snapshot_id: root,
      changed,
      files: stats.files,
      bytes: stats.bytes,
      written_bytes: stats.written,
      duration_ms: Date.now() - started,
    };
  }

  /**
   * Writes snapshot `snapshotId` of `sessionId` into `dir`, an empty workspace no sandbox has used yet (so nothing
   * in it can redirect a write), owned by `owner`. Every object read is checked against its hash.
   */
  async restore(sessionId: string, snapshotId: string, dir: string, owner: FileOwner): Promise<SnapshotRestored> {
    const started = Date.now();
    const cache = this.cacheOf(sessionId);
    const files = new Map<string, FileState>();
    const stats = { files: 0, bytes: 0 };
    const jobs: Array<() => Promise<void>> = [];

    const restoreTree = async (hash: string, path: string, rel: string): Promise<void> => {
      for (const [name, kind, mode, ref, size] of await this.readTree(hash)) {
        if (!validName(name)) throw new Error(`snapshot ${snapshotId} has a bad name ${JSON.stringify(name)}`);
        const target = join(path, name);
        const relPath = rel ? `${rel}/${name}` : name;
        if (kind === 'd') {
          mkdirSync(target, { mode: 0o700 });
          await restoreTree(ref, target, relPath);
          chmodSync(target, mode & 0o7777);
          lchownSync(target, owner.uid, owner.gid);
        } else if (kind === 'l') {
          symlinkSync(ref, target);
          lchownSync(target, owner.uid, owner.gid);
        } else {
          stats.files++;
          stats.bytes += size;
          jobs.push(async () => {
            const parts = kind === 'F' ? (JSON.parse((await this.object(ref, snapshotId)).toString()) as { c: string[] }).c : [ref];
            const fd = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode & 0o7777);
            try {
              for (const part of parts) {
                const data = await this.object(part, snapshotId);
                for (let at = 0; at < data.length; ) at += writeSync(fd, data, at);
              }
              fchownSync(fd, owner.uid, owner.gid);
              files.set(relPath, { ino: 0n, size: 0n, mtime: 0n, ctime: 0n, hash: ref, chunked: kind === 'F' });
            } finally {
              closeSync(fd);
            }
          });
        }
      }
    };
    await restoreTree(snapshotId, dir, '');
    // A pool of lanes (not batches): a slow object holds up one lane, not the others.
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(RESTORE_PARALLEL, jobs.length) }, async () => {
        while (next < jobs.length) await jobs[next++]!();
      }),
    );
    // A fchown changes ctime: what the next snapshot compares with is what is on disk now.
    for (const [relPath, state] of files) {
      const st = lstatSync(join(dir, relPath), { bigint: true });
      files.set(relPath, { ...state, ino: st.ino, size: st.size, mtime: st.mtimeNs, ctime: st.ctimeNs });
    }
    cache.files = files;
    cache.root = snapshotId;
    return { snapshot_id: snapshotId, files: stats.files, bytes: stats.bytes, duration_ms: Date.now() - started };
  }

  /** Records that a session has ended: its snapshots expire after the retention. */
  async ended(sessionId: string, at = new Date()): Promise<void> {
    this.sessions.delete(sessionId);
    await this.store.put(`sessions/${sessionStoreKey(sessionId)}/ended`, Buffer.from(JSON.stringify({ session_id: sessionId, at: at.toISOString() })));
  }

  /** Forgets what this process knows of a session's workspace (it moved to another host). */
  forget(sessionId: string): void {
    this.sessions.delete(sessionId);
  }

  /**
   * Deletes the snapshots of sessions that ended more than `retentionMs` ago, then every object no remaining
   * snapshot refers to (once it is an hour old: a snapshot being taken may be writing it). Safe to run on several
   * hosts at once.
   */
  async expire(retentionMs: number, now = Date.now()): Promise<{ sessions: number; snapshots: number; objects: number }> {
    const out = { sessions: 0, snapshots: 0, objects: 0 };
    for await (const { key } of this.store.list('sessions/')) {
      if (!key.endsWith('/ended')) continue;
      const record = await this.store.get(key, 64 * 1024).catch(() => undefined);
      const at = Date.parse((JSON.parse(record?.toString() ?? '{}') as { at?: string }).at ?? '');
      if (!(now - at > retentionMs)) continue;
      const session = key.split('/')[1]!;
      for await (const s of this.store.list(`snapshots/${session}/`)) {
        await this.store.delete(s.key);
        out.snapshots++;
      }
      await this.store.delete(key);
      out.sessions++;
    }
    const live = new Set<string>();
    const mark = async (tree: string): Promise<void> => {
      if (live.has(tree)) return;
      live.add(tree);
      for (const [, kind, , ref] of await this.readTree(tree)) {
        if (kind === 'd') await mark(ref);
        else if (kind === 'f') live.add(ref);
        else if (kind === 'F') {
          live.add(ref);
          for (const part of (JSON.parse((await this.object(ref, tree)).toString()) as { c: string[] }).c) live.add(part);
        }
      }
    };
    for await (const { key } of this.store.list('snapshots/')) await mark(key.split('/')[2]!);
    for await (const { key, modified } of this.store.list('objects/')) {
      const hash = key.split('/')[2]!;
      if (live.has(hash) || now - modified.getTime() < GRACE_MS) continue;
      await this.store.delete(key);
      out.objects++;
    }
    return out;
  }

  private cacheOf(sessionId: string): SessionCache {
    let c = this.sessions.get(sessionId);
    if (!c) {
      c = { files: new Map(), trees: new Set() };
      this.sessions.set(sessionId, c);
    }
    return c;
  }

  /** An object by hash, checked against it. */
  private async object(hash: string, what: string): Promise<Buffer> {
    const data = await this.store.get(objectKey(hash), CHUNK + 1024 * 1024);
    if (!data || sha256(data) !== hash) throw new Error(`${what}: object ${hash} is missing or damaged`);
    return data;
  }

  private async readTree(hash: string): Promise<Entry[]> {
    const data = await this.store.get(objectKey(hash), 64 * 1024 * 1024);
    if (!data) throw new Error(`tree ${hash} is missing from the snapshot store`);
    const json = gunzipSync(data, { maxOutputLength: 256 * 1024 * 1024 }).toString('utf8');
    if (sha256(`tandem-tree\n${json}`) !== hash) throw new Error(`tree ${hash} is damaged`);
    return (JSON.parse(json) as { e: Entry[] }).e;
  }
}

/** A directory entry's name as a tree may hold it. */
function validName(name: string): boolean {
  return typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

/**
 * Reads a regular file through a path under /proc/self/fd, never following a symlink, in chunks handed to `store`
 * (at most one chunk in memory here); undefined if it is not a regular file. A file of more than one chunk gets a
 * list of its chunks' hashes as its object.
 */
async function readFileAt(path: string, store: (hash: string, data: Buffer) => Promise<void>): Promise<FileState | undefined> {
  let fd: number;
  try {
    fd = openSync(path, O_FILE);
  } catch {
    return undefined; // gone, or swapped for a symlink
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    const chunks: string[] = [];
    let total = 0;
    for (;;) {
      // Chunks of CHUNK bytes; a buffer no larger than what the file seems to have left (small files are many).
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(64 * 1024, st.size - total + 1)));
      let n = 0;
      while (n < buf.length) {
        const got = readSync(fd, buf, n, buf.length - n, null);
        if (got === 0) break;
        n += got;
      }
      if (n === 0 && chunks.length > 0) break;
      const data = buf.subarray(0, n);
      const hash = sha256(data);
      chunks.push(hash);
      total += n;
      await store(hash, data);
      if (n < buf.length) break;
    }
    let hash = chunks[0]!;
    if (chunks.length > 1) {
      const list = Buffer.from(JSON.stringify({ c: chunks }));
      hash = sha256(list);
      await store(hash, list);
    }
    // What was read is what is hashed; the stat the next snapshot compares with is taken after reading.
    const after = fstatSync(fd, { bigint: true });
    return { ino: after.ino, size: BigInt(total), mtime: after.mtimeNs, ctime: after.ctimeNs, hash, chunked: chunks.length > 1 };
  } finally {
    closeSync(fd);
  }
}
