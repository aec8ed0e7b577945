/**
 * Skills: a directory whose `SKILL.md` names the skill and describes it in its front matter, with any files beside
 * it. Each upload is a version of a skill, kept in the file store's blob store (never in history):
 *
 *   skills/<skill id>/meta.json                    the skill: display name, latest version, times
 *   skills/<skill id>/versions/<version>/meta.json  the version: name, description, directory, size
 *   skills/<skill id>/versions/<version>/files.json its files, paths relative to the skill's directory (base64)
 *
 * A session pins the versions its agent names; the hands host writes their files read-only under /mnt/skills/<name>/
 * and the model is told each skill's name, description and where its SKILL.md is.
 */
import { randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import type { BlobStore } from '../activities/sandbox/blob-store.js';
import type { PinnedSkill } from '../shared/types.js';
import { FileStoreError } from './store.js';

/** Files of one skill version, and their bytes together (the hosted API's limit of a skill upload). */
export const MAX_SKILL_FILES = 200;
export const MAX_SKILL_BYTES = 8 * 1024 * 1024;
const MAX_META_BYTES = 64 * 1024;
const SKILL_ID = /^skill_[0-9a-f]{24}$/;
const VERSION = /^[0-9]{16}$/;
/** A skill's name: what its directory under /mnt/skills is called. */
const SKILL_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;

export interface SkillMeta {
  id: string;
  type: 'skill';
  display_name: string;
  latest_version_id: string;
  source: { type: 'custom' };
  created_at: string;
  updated_at: string;
}

export interface SkillVersionMeta {
  id: string;
  type: 'skill_version';
  skill_id: string;
  name: string;
  description: string;
  /** The top directory the upload's paths shared. */
  directory: string;
  files: number;
  bytes: number;
  created_at: string;
}

/** One file of a skill, its path relative to the skill's directory. */
export interface SkillFile {
  path: string;
  data: Buffer;
}

/**
 * Checks an upload's files (paths as uploaded, `<dir>/SKILL.md` among them) and reads the skill's name and
 * description from SKILL.md's front matter. A problem is a 400 that says what is wrong.
 */
export function readSkillUpload(files: Array<{ path: string; data: Buffer }>): { directory: string; name: string; description: string; files: SkillFile[] } {
  const bad = (why: string) => new FileStoreError(400, `files: ${why}`);
  if (files.length === 0) throw bad('upload the skill\'s files, SKILL.md among them, as parts named "files"');
  if (files.length > MAX_SKILL_FILES) throw bad(`a skill has at most ${MAX_SKILL_FILES} files`);
  const bytes = files.reduce((n, f) => n + f.data.length, 0);
  if (bytes > MAX_SKILL_BYTES) throw bad(`a skill holds at most ${MAX_SKILL_BYTES} bytes; these are ${bytes}`);
  let directory: string | undefined;
  const out: SkillFile[] = [];
  for (const f of files) {
    const parts = f.path.replaceAll('\\', '/').split('/');
    if (parts.length < 2 || parts.some((p) => p === '' || p === '.' || p === '..' || /[\u0000-\u001f\u007f]/.test(p)))
      throw bad(`"${f.path}" must be a relative path inside the skill's directory (such as my-skill/SKILL.md)`);
    if (directory !== undefined && parts[0] !== directory) throw bad(`every file must be in one directory; "${f.path}" is not in "${directory}"`);
    directory = parts[0]!;
    const path = parts.slice(1).join('/');
    if (out.some((o) => o.path === path)) throw bad(`"${f.path}" is uploaded twice`);
    out.push({ path, data: f.data });
  }
  const skillMd = out.find((f) => f.path === 'SKILL.md');
  if (!skillMd) throw bad(`the skill's directory "${directory}" has no SKILL.md`);
  const front = /^---\r?\n([\s\S]*?)\r?\n---(?:\r?\n|$)/.exec(skillMd.data.toString('utf8'));
  if (!front) throw bad('SKILL.md must begin with front matter (--- name: ..., description: ... ---)');
  let fields: unknown;
  try {
    fields = parseYaml(front[1]!);
  } catch (err) {
    throw bad(`SKILL.md's front matter is not YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const { name, description } = (typeof fields === 'object' && fields !== null ? fields : {}) as Record<string, unknown>;
  if (typeof name !== 'string' || !SKILL_NAME.test(name))
    throw bad('SKILL.md\'s front matter needs a name of lowercase letters, digits and hyphens (at most 64)');
  if (typeof description !== 'string' || description.trim() === '' || description.length > 1024)
    throw bad('SKILL.md\'s front matter needs a description (at most 1024 characters)');
  return { directory: directory!, name, description: description.trim(), files: out };
}

export class SkillStore {
  constructor(private readonly blobs: BlobStore) {}

  /** Creates a skill from an upload; its first version is the upload. */
  async create(upload: ReturnType<typeof readSkillUpload>, displayName?: string): Promise<SkillMeta> {
    const id = `skill_${randomBytes(12).toString('hex')}`;
    const version = await this.putVersion(id, upload);
    const skill: SkillMeta = {
      id,
      type: 'skill',
      display_name: displayName || upload.name,
      latest_version_id: version.id,
      source: { type: 'custom' },
      created_at: version.created_at,
      updated_at: version.created_at,
    };
    await this.blobs.put(`skills/${id}/meta.json`, Buffer.from(JSON.stringify(skill)));
    return skill;
  }

  /** Adds a version (its SKILL.md must keep the skill's name: sessions find it under /mnt/skills/<name>). */
  async addVersion(id: string, upload: ReturnType<typeof readSkillUpload>): Promise<SkillVersionMeta> {
    const skill = await this.require(id);
    const latest = await this.version(id, skill.latest_version_id);
    if (latest && latest.name !== upload.name)
      throw new FileStoreError(400, `files: SKILL.md names the skill "${upload.name}", but this skill is "${latest.name}"; create a new skill instead`);
    const version = await this.putVersion(id, upload);
    await this.blobs.put(`skills/${id}/meta.json`, Buffer.from(JSON.stringify({ ...skill, latest_version_id: version.id, updated_at: version.created_at })));
    return version;
  }

  async get(id: string): Promise<SkillMeta | undefined> {
    if (!SKILL_ID.test(id)) return undefined;
    return readJson<SkillMeta>(await this.blobs.get(`skills/${id}/meta.json`, MAX_META_BYTES).catch(() => undefined));
  }

  async require(id: string): Promise<SkillMeta> {
    const skill = await this.get(id);
    if (!skill) throw new FileStoreError(404, `skill "${id}" was not found`);
    return skill;
  }

  /** Every skill, newest first. */
  async list(): Promise<SkillMeta[]> {
    const out: SkillMeta[] = [];
    for await (const o of this.blobs.list('skills/')) {
      const m = /^skills\/(skill_[0-9a-f]{24})\/meta\.json$/.exec(o.key);
      const skill = m ? await this.get(m[1]!) : undefined;
      if (skill) out.push(skill);
    }
    return out.sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id));
  }

  async version(id: string, version: string): Promise<SkillVersionMeta | undefined> {
    if (!SKILL_ID.test(id) || !VERSION.test(version)) return undefined;
    return readJson<SkillVersionMeta>(await this.blobs.get(`skills/${id}/versions/${version}/meta.json`, MAX_META_BYTES).catch(() => undefined));
  }

  async requireVersion(id: string, version: string): Promise<SkillVersionMeta> {
    await this.require(id);
    const v = await this.version(id, version);
    if (!v) throw new FileStoreError(404, `skill "${id}" has no version "${version}"`);
    return v;
  }

  /** A skill's versions, newest first. */
  async versions(id: string): Promise<SkillVersionMeta[]> {
    await this.require(id);
    const out: SkillVersionMeta[] = [];
    for await (const o of this.blobs.list(`skills/${id}/versions/`)) {
      const m = /\/versions\/([0-9]{16})\/meta\.json$/.exec(o.key);
      const v = m ? await this.version(id, m[1]!) : undefined;
      if (v) out.push(v);
    }
    return out.sort((a, b) => b.id.localeCompare(a.id));
  }

  /** A version's files (the hands host writes them into sandboxes). */
  async files(id: string, version: string): Promise<SkillFile[]> {
    const raw = await this.blobs.get(`skills/${id}/versions/${version}/files.json`, 2 * MAX_SKILL_BYTES);
    if (!raw) throw new FileStoreError(404, `skill "${id}" has no version "${version}"`);
    return (JSON.parse(raw.toString('utf8')) as Array<{ path: string; data: string }>).map((f) => ({ path: f.path, data: Buffer.from(f.data, 'base64') }));
  }

  /** Deletes one version; the latest cannot go while the skill stays (delete the skill instead). */
  async deleteVersion(id: string, version: string): Promise<void> {
    const skill = await this.require(id);
    await this.requireVersion(id, version);
    if (skill.latest_version_id === version)
      throw new FileStoreError(400, `version "${version}" is the latest of skill "${id}"; delete the skill, or add a newer version first`);
    await this.blobs.delete(`skills/${id}/versions/${version}/meta.json`);
    await this.blobs.delete(`skills/${id}/versions/${version}/files.json`);
  }

  /** Deletes a skill and its versions: its metadata first, so it stops being listed before its files go. */
  async delete(id: string): Promise<void> {
    await this.require(id);
    const versions = await this.versions(id);
    await this.blobs.delete(`skills/${id}/meta.json`);
    for (const v of versions) {
      await this.blobs.delete(`skills/${id}/versions/${v.id}/meta.json`);
      await this.blobs.delete(`skills/${id}/versions/${v.id}/files.json`);
    }
  }

  /** The versions `refs` name (the latest where none is given), pinned for a session; an unknown one is a 404. */
  async pin(refs: Array<{ skill_id: string; version?: string | null }>): Promise<PinnedSkill[]> {
    const out: PinnedSkill[] = [];
    for (const r of refs) {
      const skill = await this.require(r.skill_id);
      const v = await this.requireVersion(r.skill_id, r.version ?? skill.latest_version_id);
      if (out.some((o) => o.name === v.name)) throw new FileStoreError(400, `two of the skills are named "${v.name}"; each needs its own directory under /mnt/skills`);
      out.push({ skill_id: skill.id, version: v.id, name: v.name, description: v.description });
    }
    return out;
  }

  private async putVersion(id: string, upload: ReturnType<typeof readSkillUpload>): Promise<SkillVersionMeta> {
    const now = new Date();
    // Microseconds since the epoch, as the hosted API's version ids are: ordered by time.
    const version: SkillVersionMeta = {
      id: String(now.getTime() * 1000 + Math.floor(Math.random() * 1000)).padStart(16, '0'),
      type: 'skill_version',
      skill_id: id,
      name: upload.name,
      description: upload.description,
      directory: upload.directory,
      files: upload.files.length,
      bytes: upload.files.reduce((n, f) => n + f.data.length, 0),
      created_at: now.toISOString(),
    };
    const files = upload.files.map((f) => ({ path: f.path, data: f.data.toString('base64') }));
    await this.blobs.put(`skills/${id}/versions/${version.id}/files.json`, Buffer.from(JSON.stringify(files)));
    await this.blobs.put(`skills/${id}/versions/${version.id}/meta.json`, Buffer.from(JSON.stringify(version)));
    return version;
  }
}

function readJson<T>(raw: Buffer | undefined): T | undefined {
  return raw ? (JSON.parse(raw.toString('utf8')) as T) : undefined;
}
