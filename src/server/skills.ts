/**
 * The skills API (`/v1/skills`): create a skill from an upload of its directory, list, retrieve and delete skills,
 * and add, list, retrieve and delete their versions, in the hosted API's shapes, over the skill store
 * (files/skills.ts). Pre-built Anthropic skills are not shipped: listing them finds none.
 */
import type { IncomingMessage } from 'node:http';
import { MAX_SKILL_BYTES, MAX_SKILL_FILES, readSkillUpload, type SkillStore } from '../files/skills.js';
import { parseMultipart } from './files.js';
import { invalid, pageOf, readBody, type Router } from './http.js';

/** The files (parts named `files`, each filename its path) and `display_name` of a multipart upload. */
async function readUpload(req: IncomingMessage) {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type)) throw invalid('files', 'upload the skill as multipart/form-data with "files" parts');
  const parts = parseMultipart(await readBody(req, MAX_SKILL_BYTES + 1024 * 1024), type, MAX_SKILL_FILES + 2);
  const files = parts.filter((p) => p.name === 'files' || p.name === 'files[]').map((p) => ({ path: p.filename ?? '', data: p.data }));
  const displayName = parts.find((p) => p.name === 'display_name')?.data.toString('utf8');
  return { upload: readSkillUpload(files), ...(displayName ? { displayName } : {}) };
}

/** Adds the `/v1/skills` routes. */
export function addSkillRoutes(router: Router, skills: SkillStore): void {
  router.add('POST', '/v1/skills', async (req) => {
    const { upload, displayName } = await readUpload(req.raw);
    return skills.create(upload, displayName);
  });
  router.add('GET', '/v1/skills', async (req) => {
    const source = req.query.get('source');
    if (source && source !== 'custom') return { data: [], next_page: null }; // no pre-built skills here
    return pageOf(await skills.list(), req.query);
  });
  router.add('GET', '/v1/skills/:id', (req) => skills.require(req.params.id!));
  router.add('DELETE', '/v1/skills/:id', async (req) => {
    await skills.delete(req.params.id!);
    return { id: req.params.id!, type: 'skill_deleted' };
  });
  router.add('POST', '/v1/skills/:id/versions', async (req) => skills.addVersion(req.params.id!, (await readUpload(req.raw)).upload));
  router.add('GET', '/v1/skills/:id/versions', async (req) => pageOf(await skills.versions(req.params.id!), req.query));
  router.add('GET', '/v1/skills/:id/versions/:version', (req) => skills.requireVersion(req.params.id!, req.params.version!));
  router.add('DELETE', '/v1/skills/:id/versions/:version', async (req) => {
    await skills.deleteVersion(req.params.id!, req.params.version!);
    return { id: req.params.version!, type: 'skill_version_deleted' };
  });
}
