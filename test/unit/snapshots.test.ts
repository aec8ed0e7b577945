/**
 * Workspace snapshots on a real directory store: a restore gives back the same tree, a second snapshot writes only
 * what changed, nothing outside the workspace gets in through a symlink or a FIFO, large files go in chunks, and
 * retention removes what no live snapshot needs.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DirStore } from '../../src/activities/sandbox/blob-store.js';
import { Snapshots } from '../../src/activities/sandbox/snapshots.js';

const root = mkdtempSync(join(tmpdir(), 'tandem-snap-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
let n = 0;
const fresh = (name: string) => {
  const dir = join(root, `${name}-${n++}`);
  mkdirSync(dir);
  return dir;
};

/** Every path under `dir` with what it is: file contents' hash and mode, link targets, directories. */
function listing(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out[r] = `link ${readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[r] = `dir ${(st.mode & 0o777).toString(8)}`;
        walk(p, r);
      } else out[r] = `file ${(st.mode & 0o777).toString(8)} ${readFileSync(p).toString('base64').slice(0, 40)} ${st.size}`;
    }
  };
  walk(dir, '');
  return out;
}

function workspace(): string {
  const ws = fresh('ws');
  mkdirSync(join(ws, 'src/deep/er'), { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(join(ws, 'src', `f${i}.txt`), `file ${i}\n`.repeat(100));
  writeFileSync(join(ws, 'src/deep/er/x.py'), 'print(1)\n');
  writeFileSync(join(ws, 'run.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(ws, 'run.sh'), 0o755);
  symlinkSync('src/deep', join(ws, 'shortcut'));
  mkdirSync(join(ws, 'empty'));
  return ws;
}

describe('snapshots', () => {
  it('restores the same tree: files, modes, directories, symlinks', async () => {
    const snaps = new Snapshots(new DirStore(fresh('store')));
    const ws = workspace();
    const taken = await snaps.take('s1', ws);
    expect(taken.changed).toBe(true);
    expect(taken.files).toBe(52);
    const target = fresh('restore');
    const restored = await new Snapshots(snaps.store).restore('s1', taken.snapshot_id, target, owner);
    expect(restored.files).toBe(52);
    expect(listing(target)).toEqual(listing(ws));
  });

  it('writes only what changed, and nothing when nothing did', async () => {
    const snaps = new Snapshots(new DirStore(fresh('store')));
    const ws = workspace();
    writeFileSync(join(ws, 'big.bin'), randomBytes(2 * 1024 * 1024));
    const first = await snaps.take('s2', ws);
    expect(first.written_bytes).toBeGreaterThan(2 * 1024 * 1024);
    const same = await snaps.take('s2', ws);
    expect(same).toMatchObject({ changed: false, snapshot_id: first.snapshot_id, written_bytes: 0 });
    writeFileSync(join(ws, 'src/deep/er/x.py'), 'print(2)\n'.repeat(1000));
    const second = await snaps.take('s2', ws);
    expect(second.changed).toBe(true);
    // The changed file (9 KB), the trees on its path (4 of them) and the record: not the 2 MB file, not the others.
    expect(second.written_bytes).toBeLessThan(9000 + 16 * 1024);
    const target = fresh('restore');
    await snaps.restore('s2', second.snapshot_id, target, owner);
    expect(listing(target)).toEqual(listing(ws));
    // A restore primes what the next snapshot compares with: it is incremental on the restoring host too.
    const other = new Snapshots(snaps.store);
    await other.restore('s2', second.snapshot_id, target, owner).catch(() => undefined); // target is not empty: refused
    const elsewhere = fresh('restore');
    await other.restore('s2', second.snapshot_id, elsewhere, owner);
    expect(await other.take('s2', elsewhere)).toMatchObject({ changed: false, written_bytes: 0 });
  });

  it('never follows a symlink out of the workspace, and leaves FIFOs and sockets out', async () => {
    const snaps = new Snapshots(new DirStore(fresh('store')));
    const outside = fresh('outside');
    writeFileSync(join(outside, 'secret.txt'), 'canary-outside-the-workspace');
    const ws = fresh('ws');
    symlinkSync(outside, join(ws, 'escape'));
    symlinkSync(join(outside, 'secret.txt'), join(ws, 'secret-link'));
    execFileSync('mkfifo', [join(ws, 'pipe')]);
    writeFileSync(join(ws, 'ok.txt'), 'ok');
    const taken = await snaps.take('s3', ws);
    expect(taken.files).toBe(1);
    const target = fresh('restore');
    await snaps.restore('s3', taken.snapshot_id, target, owner);
    expect(listing(target)).toEqual({
      escape: `link ${outside}`,
      'ok.txt': `file 644 ${Buffer.from('ok').toString('base64')} 2`,
      'secret-link': `link ${join(outside, 'secret.txt')}`,
    });
    // Nothing in the store holds what is outside.
    const stored: string[] = [];
    for await (const { key } of snaps.store.list('')) stored.push((await snaps.store.get(key))!.toString('latin1'));
    expect(stored.length).toBeGreaterThan(0);
    expect(stored.some((o) => o.includes('canary-outside-the-workspace'))).toBe(false);
  });

  it('stores a large file in chunks and restores it byte for byte', async () => {
    const snaps = new Snapshots(new DirStore(fresh('store')));
    const ws = fresh('ws');
    const data = randomBytes(10 * 1024 * 1024 + 123);
    writeFileSync(join(ws, 'large.bin'), data);
    const taken = await snaps.take('s4', ws);
    const target = fresh('restore');
    await snaps.restore('s4', taken.snapshot_id, target, owner);
    expect(readFileSync(join(target, 'large.bin')).equals(data)).toBe(true);
  });

  it('expires the snapshots of sessions ended past the retention, and the objects only they used', async () => {
    const snaps = new Snapshots(new DirStore(fresh('store')));
    const a = fresh('ws');
    writeFileSync(join(a, 'only-a.txt'), 'aaa');
    const b = fresh('ws');
    writeFileSync(join(b, 'only-b.txt'), 'bbb');
    const ta = await snaps.take('ended-session', a);
    const tb = await snaps.take('live-session', b);
    await snaps.ended('ended-session', new Date(Date.now() - 10 * 3600_000));
    const hour = 3600_000;
    // Within the retention: nothing goes.
    expect(await snaps.expire(24 * hour)).toEqual({ sessions: 0, snapshots: 0, objects: 0 });
    // Past it, and past the grace of young objects: the ended session's snapshot and its objects go.
    const gone = await snaps.expire(hour, Date.now() + 2 * hour);
    expect(gone).toEqual({ sessions: 1, snapshots: 1, objects: 2 }); // its file and its root tree
    await expect(snaps.restore('ended-session', ta.snapshot_id, fresh('restore'), owner)).rejects.toThrow(/missing/);
    const target = fresh('restore');
    await snaps.restore('live-session', tb.snapshot_id, target, owner);
    expect(readFileSync(join(target, 'only-b.txt'), 'utf8')).toBe('bbb');
  });
});
