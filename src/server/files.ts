/**
 * The Files API (`/v1/files`): upload, list, metadata, download and delete, in the hosted API's shapes, over the
 * file store (files/store.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename } from 'node:path';
import { FileStore, MAX_FILE_BYTES, type FileMetadata } from '../files/store.js';
import { invalid, pageOf, readBody, type ApiRequest, type Router } from './http.js';

/** `expires_in_seconds` bounds, as the hosted API gives them. */
const MIN_EXPIRY_S = 3600;
const MAX_EXPIRY_S = 7_776_000;
/** One part of a multipart body: its name, its filename when it has one, its type and its bytes. */
interface Part {
  name: string;
  filename?: string;
  type?: string;
  data: Buffer;
}

/**
 * The parts of a multipart/form-data body, read whole (the body is bounded before it is parsed). A part keeps its
 * bytes as they are: a file sent without a filename is still a file, not text.
 */
export function parseMultipart(body: Buffer, contentType: string, maxParts = 16): Part[] {
  const boundary = /;\s*boundary=(?:"([^"]{1,70})"|([^;\s]{1,70}))/i.exec(contentType);
  if (!boundary) throw invalid('file', 'the multipart body names no boundary');
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const partEnd = Buffer.concat([Buffer.from('\r\n'), delimiter]);
  const parts: Part[] = [];
  let at = body.indexOf(delimiter);
  while (at >= 0 && parts.length < maxParts) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') return parts; // the closing delimiter
    const headerEnd = body.indexOf('\r\n\r\n', start);
    const next = body.indexOf(partEnd, headerEnd);
    if (headerEnd < 0 || next < 0 || headerEnd - start > 8192) break;
    const headers = body.subarray(start, headerEnd).toString('utf8');
    const disposition = /^content-disposition:\s*form-data(.*)$/im.exec(headers)?.[1] ?? '';
    const param = (key: string) => new RegExp(`;\\s*${key}="([^"]*)"`, 'i').exec(disposition)?.[1];
    const name = param('name');
    if (name !== undefined) {
      const filename = param('filename');
      const type = /^content-type:\s*([^\r\n;]+)/im.exec(headers)?.[1]?.trim();
      parts.push({ name, data: body.subarray(headerEnd + 4, next), ...(filename !== undefined ? { filename } : {}), ...(type ? { type } : {}) });
    }
    at = next + 2;
  }
  throw invalid('file', 'the multipart body could not be read');
}

/** The `file` (and `expires_in_seconds`) of a multipart upload. */
async function readUpload(req: IncomingMessage, maxBytes: number) {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type)) throw invalid('file', 'upload the file as multipart/form-data with a "file" part');
  // The multipart framing around the file is a few hundred bytes; a generous allowance keeps the cap the file's own.
  const parts = parseMultipart(await readBody(req, maxBytes + 64 * 1024), type);
  const file = parts.find((p) => p.name === 'file');
  if (!file) throw invalid('file', 'is required: a part named "file" with the bytes');
  const expiry = parts.find((p) => p.name === 'expires_in_seconds')?.data.toString('utf8');
  let expires: number | undefined;
  if (expiry !== undefined) {
    expires = Number(expiry);
    if (!Number.isInteger(expires) || expires < MIN_EXPIRY_S || expires > MAX_EXPIRY_S)
      throw invalid('expires_in_seconds', `must be a whole number from ${MIN_EXPIRY_S} to ${MAX_EXPIRY_S}`);
  }
  // Only the final path component of the part's filename is kept (the hosted API's rule), without control characters.
  const filename = basename((file.filename ?? '').replaceAll('\\', '/')).replace(/[\u0000-\u001f\u007f]/g, '').slice(0, 255) || 'unnamed';
  const mime = file.type && /^[\w.+-]+\/[\w.+-]+$/.test(file.type) ? file.type : 'application/octet-stream';
  return { filename, mime_type: mime, data: file.data, ...(expires ? { expires_in_seconds: expires } : {}) };
}

/** Sends a file's bytes. */
function sendFile(res: ServerResponse, meta: FileMetadata, data: Buffer): void {
  res.writeHead(200, {
    'content-type': meta.mime_type,
    'content-length': data.length,
    'content-disposition': `attachment; filename="${meta.filename.replace(/["\\\u0080-\uffff]/g, '_')}"`,
  });
  res.end(data);
}

/** Adds the `/v1/files` routes. */
export function addFileRoutes(router: Router, files: FileStore, maxBytes = MAX_FILE_BYTES): void {
  router.add('POST', '/v1/files', async (req: ApiRequest) => files.create(await readUpload(req.raw, maxBytes)));
  router.add('GET', '/v1/files', async (req) => {
    const ids = req.query.getAll('ids').flatMap((v) => v.split(',')).filter(Boolean);
    if (ids.length > 100) throw invalid('ids', 'names at most 100 files');
    const scope = req.query.get('scope_id') ?? undefined;
    if (ids.length > 0) {
      const found = await Promise.all([...new Set(ids)].map((id) => files.get(id)));
      return { data: found.filter((f): f is FileMetadata => f !== undefined), next_page: null };
    }
    return pageOf(await files.list(scope), req.query);
  });
  router.add('GET', '/v1/files/:id', (req) => files.require(req.params.id!));
  router.add('GET', '/v1/files/:id/content', async (req) => {
    const { meta, data } = await files.content(req.params.id!);
    sendFile(req.res, meta, data);
    return undefined;
  });
  router.add('DELETE', '/v1/files/:id', async (req) => {
    await files.delete(req.params.id!);
    return { id: req.params.id!, type: 'file_deleted' };
  });
}
