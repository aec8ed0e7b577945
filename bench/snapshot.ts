/**
 * 7. Workspace snapshots: what a snapshot costs after a small change to a large workspace, and what a restore on
 * another host costs.
 *
 * A 200 MB workspace (20 directories × 100 files × 100 KB of random bytes, plus one 10 KB file) is written into a
 * plain temporary directory. Into each store (a DirStore on this disk; MinIO on loopback as the S3-compatible
 * store, when `scripts/setup --tests` has built it), one `Snapshots` (as one hands host has) takes the first, full
 * snapshot, then, several times, rewrites the 10 KB file with new random bytes and takes a snapshot (timed, with
 * the bytes it wrote and what the store grew by), and takes one with nothing changed (the walk alone). Then
 * "another host" restores the latest snapshot: a fresh store client and a fresh `Snapshots` with no cache, into an
 * empty directory; the restored files are checked.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirStore, type BlobStore } from '../src/activities/sandbox/blob-store.js';
import { Snapshots } from '../src/activities/sandbox/snapshots.js';
import { MINIO_BIN, minioStore, startMinio } from '../test/helpers/minio.js';
import { log, type BenchEnv } from './lib/env.js';
import { bytes, goal, ms, p50p95, type Section } from './lib/section.js';
import { summarize, type Summary } from './lib/stats.js';

const DIRS = 20;
const FILES = 100;
const FILE_BYTES = 100 * 1024;
const CHANGED_BYTES = 10 * 1024;
/** The file that changes: one of 10 KB in one of the directories. */
const CHANGED = 'dir-07/notes.txt';
/** What a restore writes as: the sandbox user as a host without user-namespace remapping sees it. */
const OWNER = { uid: 1000, gid: 1000 };
const GOAL_MS = 150;
const GOAL_BYTES = 64 * 1024;
const GOAL_RESTORE_MS = 2000;

/** The results of one store. */
interface StoreResult {
  store: string;
  full: { ms: number; written_bytes: number; files: number; bytes: number };
  incremental: { ms: Summary; written_bytes: Summary; store_growth_bytes: Summary; samples: Array<{ ms: number; written_bytes: number; store_growth_bytes: number }> };
  unchanged: { ms: Summary; samples: number[] };
  restore: { ms: Summary; samples: Array<{ ms: number; files: number; bytes: number }> };
}

/** Bytes of the objects and snapshot records in a store (what it holds of snapshots). */
async function storeBytes(store: BlobStore): Promise<number> {
  let total = 0;
  for (const prefix of ['objects/', 'snapshots/']) for await (const o of store.list(prefix)) total += o.size;
  return total;
}

/** Writes the workspace; returns its size in bytes. */
function makeWorkspace(dir: string): number {
  let total = 0;
  for (let d = 0; d < DIRS; d++) {
    const sub = join(dir, `dir-${String(d).padStart(2, '0')}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < FILES; f++) {
      writeFileSync(join(sub, `file-${String(f).padStart(3, '0')}.bin`), randomBytes(FILE_BYTES));
      total += FILE_BYTES;
    }
  }
  writeFileSync(join(dir, CHANGED), randomBytes(CHANGED_BYTES));
  return total + CHANGED_BYTES;
}

/** Measures one store: the full snapshot, snapshots after a 10 KB change, and restores on "another host". */
async function measure(
  env: BenchEnv,
  name: string,
  workspace: string,
  scratch: string,
  open: () => BlobStore,
  counts: { incremental: number; restore: number },
): Promise<StoreResult> {
  const store = open();
  const snapshots = new Snapshots(store);
  const session = env.newSessionId('snap');
  let t = Date.now();
  const full = await snapshots.take(session, workspace);
  const fullMs = Date.now() - t;
  log(`snapshot: ${name}: full snapshot of ${bytes(full.bytes)} in ${full.files} files: ${ms(fullMs)}, ${bytes(full.written_bytes)} written`);

  const incremental: StoreResult['incremental']['samples'] = [];
  const unchanged: number[] = [];
  let latest = full.snapshot_id;
  let held = await storeBytes(store);
  for (let i = 0; i < counts.incremental; i++) {
    writeFileSync(join(workspace, CHANGED), randomBytes(CHANGED_BYTES));
    t = Date.now();
    const r = await snapshots.take(session, workspace);
    const took = Date.now() - t;
    if (!r.changed || r.snapshot_id === latest) throw new Error(`${name}: a snapshot after a change reported no change`);
    latest = r.snapshot_id;
    const now = await storeBytes(store);
    incremental.push({ ms: took, written_bytes: r.written_bytes, store_growth_bytes: now - held });
    held = now;

    t = Date.now();
    const same = await snapshots.take(session, workspace);
    unchanged.push(Date.now() - t);
    if (same.changed || same.written_bytes !== 0) throw new Error(`${name}: a snapshot with nothing changed wrote ${same.written_bytes} bytes`);
  }
  log(`snapshot: ${name}: ${counts.incremental} snapshots after a 10 KB change`);

  const restores: StoreResult['restore']['samples'] = [];
  const want = readFileSync(join(workspace, CHANGED));
  for (let i = 0; i < counts.restore; i++) {
    const target = mkdtempSync(join(scratch, 'restore-'));
    try {
      // Another host: its own store client and a Snapshots that has seen nothing of this session.
      const other = new Snapshots(open());
      t = Date.now();
      const r = await other.restore(session, latest, target, OWNER);
      const took = Date.now() - t;
      if (r.files !== full.files || r.bytes !== full.bytes || !readFileSync(join(target, CHANGED)).equals(want))
        throw new Error(`${name}: the restore wrote ${r.files} files, ${r.bytes} bytes, not the workspace as it was`);
      restores.push({ ms: took, files: r.files, bytes: r.bytes });
    } finally {
      rmSync(target, { recursive: true, force: true });
    }
  }
  log(`snapshot: ${name}: ${counts.restore} restore(s) on another host: ${restores.map((r) => ms(r.ms)).join(', ')}`);
  return {
    store: store.description,
    full: { ms: fullMs, written_bytes: full.written_bytes, files: full.files, bytes: full.bytes },
    incremental: {
      ms: summarize(incremental.map((s) => s.ms)),
      written_bytes: summarize(incremental.map((s) => s.written_bytes)),
      store_growth_bytes: summarize(incremental.map((s) => s.store_growth_bytes)),
      samples: incremental,
    },
    unchanged: { ms: summarize(unchanged), samples: unchanged },
    restore: { ms: summarize(restores.map((r) => r.ms)), samples: restores },
  };
}

/** Measures snapshots and restores of a 200 MB workspace into a directory store and, if built, MinIO. */
export async function benchSnapshot(env: BenchEnv): Promise<Section> {
  const counts = { incremental: env.opts.quick ? 3 : 10, restore: env.opts.quick ? 1 : 3 };
  const root = mkdtempSync(join(env.dir, 'snapshot-'));
  const results: Record<string, StoreResult> = {};
  let minioSkipped: string | undefined;
  try {
    const workspace = join(root, 'workspace');
    mkdirSync(workspace);
    const size = makeWorkspace(workspace);
    log(`snapshot: workspace of ${bytes(size)} written`);

    const dirRoot = join(root, 'store');
    results.dir = await measure(env, 'directory store', workspace, root, () => new DirStore(dirRoot), counts);
    rmSync(dirRoot, { recursive: true, force: true });

    if (!existsSync(MINIO_BIN)) {
      minioSkipped = `no MinIO at .tandem/bin/minio (\`bash scripts/setup --tests\` builds it)`;
      log(`snapshot: MinIO skipped: ${minioSkipped}`);
    } else {
      const minio = await startMinio();
      const stop = env.own('MinIO', () => minio.stop(), () => void minio.stop());
      try {
        const open = () => minioStore(minio);
        results.minio = await measure(env, 'MinIO (S3)', workspace, root, open, counts);
      } finally {
        await stop();
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }

  const label = { dir: 'directory store', minio: 'MinIO (S3, loopback)' } as const;
  const rows: Section['rows'] = [];
  for (const key of ['dir', 'minio'] as const) {
    const r = results[key];
    if (!r) {
      rows.push({ metric: `${label[key]}`, value: `n/a: ${minioSkipped ?? 'not measured'}` });
      continue;
    }
    rows.push(
      { metric: `${label[key]}: first (full) snapshot`, value: `${ms(r.full.ms)}, ${bytes(r.full.written_bytes)} written` },
      {
        metric: `${label[key]}: snapshot after one 10 KB file changed p50 / p95`,
        value: `${p50p95(r.incremental.ms)} ${goal(`≤ ${GOAL_MS} ms at p50`, r.incremental.ms.p50 <= GOAL_MS)}`,
      },
      {
        metric: `${label[key]}:   bytes written p50 / max (store grew by, p50)`,
        value:
          `${bytes(r.incremental.written_bytes.p50)} / ${bytes(r.incremental.written_bytes.max)} ` +
          `(${bytes(r.incremental.store_growth_bytes.p50)}) ${goal('≤ 64 KiB every time', r.incremental.written_bytes.max <= GOAL_BYTES)}`,
      },
      { metric: `${label[key]}: snapshot with nothing changed p50`, value: ms(r.unchanged.ms.p50) },
      {
        metric: `${label[key]}: restore on another host p50 / max`,
        value: `${ms(r.restore.ms.p50)} / ${ms(r.restore.ms.max)} ${goal(`≤ ${GOAL_RESTORE_MS / 1000} s at p50`, r.restore.ms.p50 <= GOAL_RESTORE_MS)}`,
      },
    );
  }
  const stores = Object.keys(results) as Array<keyof typeof label>;
  return {
    key: 'snapshot',
    title: '7. Workspace snapshots',
    method:
      `A workspace of ${DIRS} directories × ${FILES} files × ${FILE_BYTES / 1024} KB of random bytes and one 10 KB file ` +
      `(200 MB) in a plain temporary directory. Per store, one Snapshots takes the first (full) snapshot, then ` +
      `${counts.incremental}× rewrites the 10 KB file with new random bytes and takes a snapshot (the time, the bytes ` +
      `it wrote, and what the store grew by), each followed by one with nothing changed. Then ${counts.restore}× ` +
      `"another host" (a fresh store client and a fresh Snapshots) restores the latest snapshot into an empty ` +
      `directory, checked. Stores: a directory on this disk (each object written to a temporary file, fsynced, ` +
      `renamed)${results.minio ? ', and MinIO on loopback (S3 API)' : ''}. The stores' objects were just written, so ` +
      `a restore reads them from the page cache.`,
    rows,
    data: {
      workspace: { dirs: DIRS, files_per_dir: FILES, file_bytes: FILE_BYTES, changed_file_bytes: CHANGED_BYTES },
      ...results,
      ...(minioSkipped ? { minio_skipped: minioSkipped } : {}),
    },
    panels: [
      {
        kind: 'strip',
        title: 'Snapshot of a 200 MB workspace after one 10 KB file changed',
        unit: 'ms',
        distributions: stores.map((k) => ({ label: label[k], samples: results[k]!.incremental.samples.map((s) => s.ms) })),
      },
      {
        kind: 'strip',
        title: 'Restore of the 200 MB workspace on another host (fresh client, empty directory)',
        unit: 's',
        distributions: stores.map((k) => ({ label: label[k], samples: results[k]!.restore.samples.map((s) => s.ms / 1000) })),
      },
    ],
  };
}
