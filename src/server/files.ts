/**
 * The Files API (`/v1/files`): upload, list, metadata, download and delete, in the hosted API's shapes. A file's
 * bytes and its metadata live in a blob store on the worker side (the snapshot store: a directory by default, or the
 * S3-compatible store when `TANDEM_SNAPSHOT_STORE` names one), under `files/<id>/`; never in workflow history.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename } from 'node:path';
import type { BlobStore } from '../activities/sandbox/blob-store.js';
import { ApiError, invalid, notFound, pageOf, readBody, type ApiRequest, type Router } from './http.js';

/** The hosted API's limit of one file. */
export const MAX_FILE_BYTES = 500 * 1000 * 1000;
/** Metadata is small; a larger object under a file's key is not Tandem's. */
const MAX_META_BYTES = 64 * 1024;
/** `expires_in_seconds` bounds, as the hosted API gives them. */
const MIN_EXPIRY_S = 3600;
const MAX_EXPIRY_S = 7_776_000;
const FILE_ID = /^file_[0-9a-f]{24}$/;

/** A file's metadata, as the API returns it. */
export interface FileMetadata {
  id: string;
  type: 'file';
  filename: string;
  mime_type: string;
  size_bytes: number;
  created_at: string;
  downloadable: boolean;
  expires_at: string | null;
  scope: { type: 'session'; id: string } | null;
}

/** Files in a blob store, each as `files/<id>/content` and then `files/<id>/meta.json` (written last: listed once whole). */
export class FileStore {
  constructor(
    private readonly blobs: BlobStore,
    private readonly maxBytes = MAX_FILE_BYTES,
  ) {}

  /** Stores a file; the bytes first, so a failure (a full disk) leaves no file listed without them. */
  async create(file: { filename: string; mime_type: string; data: Buffer; expires_in_seconds?: number; scope?: FileMetadata['scope'] }) {
    if (file.data.length > this.maxBytes) throw new ApiError(413, `the file is ${file.data.length} bytes; at most ${this.maxBytes} fit`);
    const now = new Date();
    const meta: FileMetadata = {
      id: `file_${randomBytes(12).toString('hex')}`,
      type: 'file',
      filename: file.filename,
      mime_type: file.mime_type,
      size_bytes: file.data.length,
      created_at: now.toISOString(),
      downloadable: true,
      expires_at: file.expires_in_seconds ? new Date(now.getTime() + file.expires_in_seconds * 1000).toISOString() : null,
      scope: file.scope ?? null,
    };
    try {
      await this.blobs.put(`files/${meta.id}/content`, file.data);
      await this.blobs.put(`files/${meta.id}/meta.json`, Buffer.from(JSON.stringify(meta)));
    } catch (err) {
      await this.blobs.delete(`files/${meta.id}/content`).catch(() => undefined);
      throw new ApiError(507, `the file could not be stored, and nothing of it was kept: ${(err as Error).message}`);
    }
    return meta;
  }

  /** A file's metadata; undefined when there is none, or it expired. */
  async get(id: string): Promise<FileMetadata | undefined> {
    if (!FILE_ID.test(id)) return undefined;
    const raw = await this.blobs.get(`files/${id}/meta.json`, MAX_META_BYTES).catch(() => undefined);
    if (!raw) return undefined;
    const meta = JSON.parse(raw.toString('utf8')) as FileMetadata;
    return meta.expires_at && Date.parse(meta.expires_at) <= Date.now() ? undefined : meta;
  }

  /** A file's metadata, or a 404 that names the id. */
  async require(id: string): Promise<FileMetadata> {
    const meta = await this.get(id);
    if (!meta) throw notFound('file', id);
    return meta;
  }

  /** A file's bytes, or a 404 that names the id. */
  async content(id: string): Promise<{ meta: FileMetadata; data: Buffer }> {
    const meta = await this.require(id);
    const data = await this.blobs.get(`files/${id}/content`, this.maxBytes);
    if (!data) throw notFound('file', id);
    return { meta, data };
  }

  /** Every live file, newest first; with `scope`, only that session's. */
  async list(scope?: string): Promise<FileMetadata[]> {
    const files: FileMetadata[] = [];
    for await (const o of this.blobs.list('files/')) {
      const m = /^files\/(file_[0-9a-f]{24})\/meta\.json$/.exec(o.key);
      const meta = m ? await this.get(m[1]!) : undefined;
      if (meta && (scope === undefined || meta.scope?.id === scope)) files.push(meta);
    }
    return files.sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id));
  }

  /** Deletes a file: its metadata first, so it stops being listed before its bytes go. */
  async delete(id: string): Promise<void> {
    await this.require(id);
    await this.blobs.delete(`files/${id}/meta.json`);
    await this.blobs.delete(`files/${id}/content`);
  }
}

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
export function parseMultipart(body: Buffer, contentType: string): Part[] {
  const boundary = /;\s*boundary=(?:"([^"]{1,70})"|([^;\s]{1,70}))/i.exec(contentType);
  if (!boundary) throw invalid('file', 'the multipart body names no boundary');
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const partEnd = Buffer.concat([Buffer.from('\r\n'), delimiter]);
  const parts: Part[] = [];
  let at = body.indexOf(delimiter);
  while (at >= 0 && parts.length < 16) {
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
