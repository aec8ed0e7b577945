/**
 * A session's files on the hands host, without a sandbox: the mount-path rules both the API and the workflow apply,
 * and what `sync` and `publish` do with a slot's directories, including what a hostile sandbox leaves in outputs.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DirStore } from '../../src/activities/sandbox/blob-store.js';
import { SessionFilesOnHost } from '../../src/activities/sandbox/session-files.js';
import type { Slot } from '../../src/activities/sandbox/slot.js';
import { FileStore, FileStoreError, outputFileId } from '../../src/files/store.js';
import { readSkillUpload, SkillStore } from '../../src/files/skills.js';
import { filesChangeProblem, mountPathProblem } from '../../src/shared/files.js';
import type { FileResource } from '../../src/shared/types.js';

const file = (id: string, file_id: string, mount_path: string): FileResource => ({ type: 'file', id, file_id, mount_path, created_at: '2026-01-01T00:00:00Z' });

/** A slot's directories under a new temporary directory, and a file store beside them. */
function setUp() {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-session-files-'));
  const slot = { key: 'k', dir, sock: join(dir, 'sock'), state: join(dir, 'state'), workspace: join(dir, 'ws'), uploads: join(dir, 'uploads'), outputs: join(dir, 'outputs'), skills: join(dir, 'skills') } satisfies Slot;
  mkdirSync(slot.uploads);
  mkdirSync(slot.outputs);
  mkdirSync(slot.skills);
  const blobs = new DirStore(join(dir, 'store'));
  const store = new FileStore(blobs, 1024);
  const skills = new SkillStore(blobs);
  return { dir, slot, store, skills, host: new SessionFilesOnHost(store, skills, { maxEntries: 20 }) };
}

describe('mount paths of session files', () => {
  it('takes normalized paths under /mnt/session/uploads and refuses the rest, saying why', () => {
    expect(mountPathProblem('/mnt/session/uploads/file_1')).toBeUndefined();
    expect(mountPathProblem('/mnt/session/uploads/data/a.csv')).toBeUndefined();
    expect(mountPathProblem('/workspace/a.csv')).toMatch(/must lie under \/mnt\/session\/uploads\//);
    expect(mountPathProblem('/mnt/session/uploads')).toMatch(/must lie under/);
    expect(mountPathProblem('/mnt/session/uploads/a/../../outputs/x')).toMatch(/normalized/);
    expect(mountPathProblem('/mnt/session/uploads/a//b')).toMatch(/normalized/);
    expect(mountPathProblem('/mnt/session/uploads/a\nb')).toMatch(/control characters/);
    expect(mountPathProblem(42)).toMatch(/absolute path/);
  });

  it('refuses overlapping mounts, unknown removals and a 101st file', () => {
    const files = [file('sesrsc_a', 'file_a', '/mnt/session/uploads/docs/a.txt')];
    expect(filesChangeProblem(files, { add: file('sesrsc_b', 'file_b', '/mnt/session/uploads/docs/b.txt') })).toBeUndefined();
    expect(filesChangeProblem(files, { add: file('sesrsc_b', 'file_b', '/mnt/session/uploads/docs') })).toMatch(/overlaps \/mnt\/session\/uploads\/docs\/a\.txt/);
    expect(filesChangeProblem(files, { add: file('sesrsc_b', 'file_b', '/mnt/session/uploads/docs/a.txt/x') })).toMatch(/overlaps/);
    expect(filesChangeProblem(files, { remove: 'sesrsc_zz' })).toBe('the session has no resource "sesrsc_zz"');
    expect(filesChangeProblem(files, {})).toMatch(/adds one file or removes one/);
    const full = Array.from({ length: 100 }, (_, i) => file(`sesrsc_${i}`, `file_${i}`, `/mnt/session/uploads/f${i}`));
    expect(filesChangeProblem(full, { add: file('sesrsc_x', 'file_x', '/mnt/session/uploads/x') })).toMatch(/at most 100 files/);
  });
});

describe('session files on the hands host', () => {
  it('writes the wanted files into uploads, removes the others, and says which are gone from the store', async () => {
    const { slot, store, host } = setUp();
    const a = await store.create({ filename: 'a.csv', mime_type: 'text/csv', data: Buffer.from('a,b\n1,2\n') });
    const b = await store.create({ filename: 'b.txt', mime_type: 'text/plain', data: Buffer.from('bee') });
    const fa = file('sesrsc_a', a.id, `/mnt/session/uploads/${a.id}`);
    const fb = file('sesrsc_b', b.id, '/mnt/session/uploads/deep/dir/b.txt');
    expect(await host.sync(slot, [fa, fb])).toBeUndefined();
    expect(readFileSync(join(slot.uploads, a.id), 'utf8')).toBe('a,b\n1,2\n');
    expect(readFileSync(join(slot.uploads, 'deep/dir/b.txt'), 'utf8')).toBe('bee');
    expect(statSync(join(slot.uploads, a.id)).mode & 0o777).toBe(0o644);

    await store.delete(a.id);
    expect(await host.sync(slot, [fb, file('sesrsc_c', 'file_000000000000000000000000', '/mnt/session/uploads/c')])).toMatch(
      /gone from the file store .*file_000000000000000000000000 \(at \/mnt\/session\/uploads\/c\)/,
    );
    expect(existsSync(join(slot.uploads, a.id))).toBe(false);
    expect(await host.sync(slot, [])).toBeUndefined();
    expect(existsSync(join(slot.uploads, 'deep'))).toBe(false); // emptied directories go too
  });

  it('publishes regular files of outputs as the session\'s, follows no link, and deletes what was removed', async () => {
    const { dir, slot, store, host } = setUp();
    // A canary outside outputs, and a sandbox that points links at it, as a file and as a directory.
    const secret = join(dir, 'host-secret');
    mkdirSync(secret);
    writeFileSync(join(secret, 'canary.txt'), 'CANARY-0fd8e2');
    symlinkSync(join(secret, 'canary.txt'), join(slot.outputs, 'link.txt'));
    symlinkSync(secret, join(slot.outputs, 'linkdir'));
    mkdirSync(join(slot.outputs, 'sub'));
    writeFileSync(join(slot.outputs, 'sub', 'report.md'), '# ok\n');
    writeFileSync(join(slot.outputs, 'big.bin'), Buffer.alloc(2048));

    const note = await host.publish(slot, 'sesn_1');
    expect(note).toMatch(/big\.bin is larger than 1024 bytes and was not published/);
    const listed = await store.list('sesn_1');
    expect(listed.map((f) => [f.filename, f.mime_type, f.scope])).toEqual([['sub/report.md', 'text/markdown', { type: 'session', id: 'sesn_1' }]]);
    expect(listed[0]!.id).toBe(outputFileId('sesn_1', 'sub/report.md'));
    for (const f of await store.list()) expect((await store.content(f.id)).data.toString()).not.toContain('CANARY');

    // Changed, then removed: the same id follows, then goes.
    writeFileSync(join(slot.outputs, 'sub', 'report.md'), '# ok\nmore\n');
    await host.publish(slot, 'sesn_1');
    expect((await store.content(outputFileId('sesn_1', 'sub/report.md'))).data.toString()).toBe('# ok\nmore\n');
    rmSync(join(slot.outputs, 'sub'), { recursive: true });
    await host.publish(slot, 'sesn_1');
    expect(await store.list('sesn_1')).toEqual([]);
  });

  it('publishes no more than its entry limit, and says so', async () => {
    const { slot, store, host } = setUp();
    for (let i = 0; i < 30; i++) writeFileSync(join(slot.outputs, `f${String(i).padStart(2, '0')}.txt`), String(i));
    expect(await host.publish(slot, 'sesn_2')).toMatch(/holds more than 20 entries; the rest are not published/);
    expect((await store.list('sesn_2')).length).toBe(20);
  });
});

describe('skills', () => {
  const upload = (name: string, extra: Record<string, string> = {}) =>
    Object.entries({ 'SKILL.md': `---\nname: ${name}\ndescription: Makes charts from CSV files.\n---\n# ${name}\nRun chart.py.\n`, ...extra }).map(
      ([path, text]) => ({ path: `${name}/${path}`, data: Buffer.from(text) }),
    );

  it("reads a skill's name and description from SKILL.md, and refuses an upload it could not mount, saying why", () => {
    const read = readSkillUpload(upload('charts', { 'scripts/chart.py': 'print(1)' }));
    expect(read).toMatchObject({ directory: 'charts', name: 'charts', description: 'Makes charts from CSV files.' });
    expect(read.files.map((f) => f.path)).toEqual(['SKILL.md', 'scripts/chart.py']);
    const refused = (files: Array<{ path: string; data: Buffer }>) => {
      try {
        readSkillUpload(files);
      } catch (err) {
        expect(err).toBeInstanceOf(FileStoreError);
        return (err as Error).message;
      }
      return 'accepted';
    };
    expect(refused([])).toMatch(/upload the skill's files/);
    expect(refused([{ path: 'SKILL.md', data: Buffer.from('x') }])).toMatch(/must be a relative path inside the skill's directory/);
    expect(refused([...upload('a'), { path: 'a/../../etc/passwd', data: Buffer.from('x') }])).toMatch(/must be a relative path/);
    expect(refused([...upload('a'), { path: 'b/x.txt', data: Buffer.from('x') }])).toMatch(/every file must be in one directory/);
    expect(refused([{ path: 'a/README.md', data: Buffer.from('x') }])).toMatch(/has no SKILL\.md/);
    expect(refused([{ path: 'a/SKILL.md', data: Buffer.from('no front matter') }])).toMatch(/must begin with front matter/);
    expect(refused([{ path: 'a/SKILL.md', data: Buffer.from('---\nname: Bad Name\ndescription: x\n---\n') }])).toMatch(/needs a name of lowercase letters/);
  });

  it('writes pinned skills into the slot read-only, replaces a new version, and removes one no longer pinned', async () => {
    const { slot, skills, host } = setUp();
    const charts = await skills.create(readSkillUpload(upload('charts', { 'scripts/chart.py': 'print(1)' })));
    const [pinned] = await skills.pin([{ skill_id: charts.id }]);
    expect(pinned).toMatchObject({ skill_id: charts.id, version: charts.latest_version_id, name: 'charts' });
    await host.syncSkills(slot, [pinned!]);
    expect(readFileSync(join(slot.skills, 'charts', 'scripts', 'chart.py'), 'utf8')).toBe('print(1)');
    expect(statSync(join(slot.skills, 'charts', 'SKILL.md')).mode & 0o777).toBe(0o644);

    const v2 = await skills.addVersion(charts.id, readSkillUpload(upload('charts', { 'scripts/plot.py': 'print(2)' })));
    await host.syncSkills(slot, await skills.pin([{ skill_id: charts.id, version: v2.id }]));
    expect(existsSync(join(slot.skills, 'charts', 'scripts', 'chart.py'))).toBe(false);
    expect(readFileSync(join(slot.skills, 'charts', 'scripts', 'plot.py'), 'utf8')).toBe('print(2)');
    await expect(skills.addVersion(charts.id, readSkillUpload(upload('graphs')))).rejects.toThrow(/names the skill "graphs", but this skill is "charts"/);

    await host.syncSkills(slot, []);
    expect(existsSync(join(slot.skills, 'charts'))).toBe(false);
    await expect(skills.pin([{ skill_id: 'skill_000000000000000000000000' }])).rejects.toThrow('skill "skill_000000000000000000000000" was not found');
  });
});
