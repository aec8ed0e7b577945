/**
 * Files: the Files API's uploads and the files sessions publish from `/mnt/session/outputs`. A file's bytes and its
 * metadata live in a blob store on the worker side (the snapshot store: a directory by default, or the S3-compatible
 * store when `TANDEM_SNAPSHOT_STORE` names one), under `files/<id>/`; never in workflow history. The API server and
 * the hands hosts share it: the hands read a session's file resources from it and publish its outputs to it.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { BlobStore } from '../activities/sandbox/blob-store.js';
import { TandemError } from '../shared/errors.js';

/** A file store refusal, with the HTTP status the API answers it with (400 bad upload, 404 unknown, 413 too large, 507 full). */
export class FileStoreError extends TandemError {
  constructor(
    readonly status: 400 | 404 | 413 | 507,
    message: string,
  ) {
    super(message);
  }
}

/** The id of the file a session's output at `path` (relative to its outputs directory) is published as: stable. */
export function outputFileId(sessionId: string, path: string): string {
  return `file_${createHash('sha256').update(`${sessionId}\0${path}`).digest('hex').slice(0, 24)}`;
}

/** The hosted API's limit of one file. */
export const MAX_FILE_BYTES = 500 * 1000 * 1000;
/** Metadata is small; a larger object under a file's key is not Tandem's. */
const MAX_META_BYTES = 64 * 1024;
export const FILE_ID = /^file_[0-9a-f]{24}$/;

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
    readonly maxBytes = MAX_FILE_BYTES,
  ) {}

  /** Stores a new file. */
  async create(file: { filename: string; mime_type: string; data: Buffer; expires_in_seconds?: number; scope?: FileMetadata['scope'] }) {
    return this.put(`file_${randomBytes(12).toString('hex')}`, file);
  }

  /**
   * Stores a file under `id`, replacing what was there (a session's output published again after it changed); the
   * bytes first, so a failure (a full disk) leaves no file listed without them.
   */
  async put(id: string, file: { filename: string; mime_type: string; data: Buffer; expires_in_seconds?: number; scope?: FileMetadata['scope'] }) {
    if (file.data.length > this.maxBytes) throw new FileStoreError(413, `the file is ${file.data.length} bytes; at most ${this.maxBytes} fit`);
    const now = new Date();
    const meta: FileMetadata = {
      id,
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
      throw new FileStoreError(507, `the file could not be stored, and nothing of it was kept: ${(err as Error).message}`);
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
    if (!meta) throw new FileStoreError(404, `file "${id}" was not found`);
    return meta;
  }

  /** A file's bytes, or a 404 that names the id. */
  async content(id: string): Promise<{ meta: FileMetadata; data: Buffer }> {
    const meta = await this.require(id);
    return { meta, data: await this.data(meta) };
  }

  /** The bytes of a file whose metadata was read already (no more than it says), or a 404 that names it. */
  async data(meta: FileMetadata): Promise<Buffer> {
    const data = await this.blobs.get(`files/${meta.id}/content`, Math.min(meta.size_bytes, this.maxBytes));
    if (!data) throw new FileStoreError(404, `file "${meta.id}" was not found`);
    return data;
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

