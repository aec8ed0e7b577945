/**
 * The store that workspace snapshots live in, shared by every hands host: objects by key, nothing more.
 *
 *   DirStore  a directory (local, or a mount shared by the hosts); each object one file, written whole then renamed
 *   S3Store   a bucket and prefix of an S3-compatible object store (AWS S3, MinIO, ...), on the AWS SDK v3
 *
 * Both refuse the same keys (one function, {@link checkKey}), so a layout that works on one works on the other and a
 * key can never walk out of the store's directory or prefix. What lies in the store under names that are not keys
 * (a DirStore's temporary files, other programs' objects in a bucket) is never listed.
 *
 * `blobStoreFromEnv` picks one from `TANDEM_SNAPSHOT_STORE` (see its doc comment).
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, mkdirSync } from 'node:fs';
import { lstat, mkdir, open, opendir, rename, rm, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import { TandemError } from '../../shared/errors.js';

/** Objects by key (keys are '/'-separated ASCII paths such as `objects/ab/abcdef…`, `hosts/h1.json`). */
export interface BlobStore {
  /**
   * What this store is, for logs and errors (e.g. `dir:/var/lib/tandem/snapshots`,
   * `s3://bucket/prefix at http://127.0.0.1:9000`).
   */
  readonly description: string;
  has(key: string): Promise<boolean>;
  /**
   * The object's bytes, or undefined when there is none. Refuses (throws {@link ObjectTooLargeError}) an object larger
   * than maxBytes when given, without reading it whole.
   */
  get(key: string, maxBytes?: number): Promise<Buffer | undefined>;
  /** Writes the object whole (readers never see a part of it); replaces an existing one. */
  put(key: string, data: Buffer): Promise<void>;
  /** Keys under a prefix, with their last-modified time, in no particular order; pages internally. */
  list(prefix: string): AsyncIterable<{ key: string; modified: Date; size: number }>;
  /** Removes the object; no error when it is not there. */
  delete(key: string): Promise<void>;
}

/** A store refused an operation: a bad key, a bad setting, or the store's own error. The message says which. */
export class BlobStoreError extends TandemError {}

/**
 * An object larger than the caller's `maxBytes`: thrown before its bytes are read (or as soon as more than maxBytes
 * have come), so a huge or hostile object never fills the host's memory.
 */
export class ObjectTooLargeError extends BlobStoreError {
  constructor(
    readonly key: string,
    /** The object's size when the store told it, else how many bytes had come when reading stopped. */
    readonly size: number,
    readonly maxBytes: number,
    where: string,
    /** Whether `size` is the whole object's (false: reading stopped there). */
    readonly exact = true,
  ) {
    const sizeText = `${exact ? '' : 'at least '}${size} bytes`;
    super(`${where}: object ${key} is larger than ${maxBytes} bytes (${sizeText}); refused`);
  }
}

/** Keys are at most this long, so that any key fits in a file name path and in an S3 key (1024 bytes) with a prefix. */
export const MAX_KEY_LENGTH = 512;
/** A segment is a file name in a DirStore: at most 255 characters, the limit of common file systems. */
const SEGMENT = /^[A-Za-z0-9._-]{1,255}$/;
const PREFIX_CHARS = /^[A-Za-z0-9._/-]*$/;

/**
 * Checks a key for both stores: '/'-separated segments of `[A-Za-z0-9._-]` (1 to 255 characters, not `.` or `..`),
 * no leading or trailing '/', at most {@link MAX_KEY_LENGTH} characters. Throws a {@link BlobStoreError} naming the
 * key, so that no key can leave the store's directory or prefix, and one layout works on every store.
 */
export function checkKey(key: string): string {
  const segments = typeof key === 'string' ? key.split('/') : [];
  if (
    typeof key !== 'string' ||
    key.length === 0 ||
    key.length > MAX_KEY_LENGTH ||
    !segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..')
  ) {
    throw new BlobStoreError(
      `invalid object key ${JSON.stringify(key)}: expected '/'-separated segments of A-Z a-z 0-9 . _ - ` +
        `(segments of 1-255 characters, not "." or "..", no leading or trailing '/', at most ${MAX_KEY_LENGTH} in all)`,
    );
  }
  return key;
}

/**
 * Checks a list prefix: empty (everything), or the start of a key. Its complete segments (up to the last '/') follow
 * the rules of {@link checkKey}; what follows the last '/' may be any start of a segment.
 */
export function checkPrefix(prefix: string): string {
  const cut = typeof prefix === 'string' ? prefix.lastIndexOf('/') : -1;
  const ok =
    typeof prefix === 'string' &&
    prefix.length <= MAX_KEY_LENGTH &&
    PREFIX_CHARS.test(prefix) &&
    (cut < 0 || isValidKey(prefix.slice(0, cut)));
  if (!ok) {
    throw new BlobStoreError(
      `invalid list prefix ${JSON.stringify(prefix)}: expected the start of an object key ('/'-separated segments of ` +
        `A-Z a-z 0-9 . _ -), or '' for all`,
    );
  }
  return prefix;
}

function isValidKey(key: string): boolean {
  try {
    checkKey(key);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads a stream whole, but never more than `maxBytes` (when given) plus one chunk: past that it destroys the stream
 * and calls `tooLarge` (which throws). For bodies whose announced length cannot be trusted or is absent.
 */
export async function readBounded(
  body: AsyncIterable<Uint8Array | string> & { destroy?: (err?: Error) => void },
  maxBytes: number | undefined,
  tooLarge: (received: number) => never,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of body) {
    const buf =
      typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    received += buf.length;
    if (maxBytes !== undefined && received > maxBytes) {
      body.destroy?.();
      tooLarge(received);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, received);
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** A temporary file's name: '+' is not allowed in keys, so it can never be taken for an object or collide with one. */
const TEMP_PREFIX = '.tmp+';

/**
 * Objects as files under a root directory (created 0700 when missing; objects 0600). A put writes a temporary file
 * in the object's directory, fsyncs it, renames it over the key and fsyncs the directory: readers see the old object
 * or the new one whole, never a part, and a crash leaves no torn object (at worst a `.tmp+…` file, never listed).
 * Works on a mount shared by hosts as far as the file system's rename is atomic (local file systems, NFS).
 *
 * A file cannot also be a directory: `a/b` and `a/b/c` cannot both be objects here (a put of the second fails with
 * an error naming it). Layouts with a fixed depth per kind of object (`objects/ab/<hash>`) never meet this.
 */
export class DirStore implements BlobStore {
  readonly root: string;
  readonly description: string;

  constructor(root: string) {
    this.root = resolve(root);
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    this.description = `dir:${this.root}`;
  }

  private path(key: string): string {
    return join(this.root, ...checkKey(key).split('/'));
  }

  private fail(op: string, key: string, err: unknown): BlobStoreError {
    return new BlobStoreError(`${this.description}: ${op} ${key} failed: ${(err as Error)?.message ?? String(err)}`, {
      cause: err,
    });
  }

  async has(key: string): Promise<boolean> {
    const path = this.path(key);
    try {
      return (await lstat(path)).isFile();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return false;
      throw this.fail('has', key, err);
    }
  }

  async get(key: string, maxBytes?: number): Promise<Buffer | undefined> {
    const path = this.path(key);
    let fh;
    try {
      // A symlink is not an object (list skips it too): nothing outside the store is read through one.
      fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (['ENOENT', 'ENOTDIR', 'ELOOP'].includes(errnoCode(err) ?? '')) return undefined;
      throw this.fail('get', key, err);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return undefined; // a directory of longer keys, not an object
      if (maxBytes !== undefined && st.size > maxBytes) {
        throw new ObjectTooLargeError(key, st.size, maxBytes, this.description);
      }
      // The file never changes once renamed into place, so its size is the object's; read no more than that.
      const buf = Buffer.alloc(st.size);
      let filled = 0;
      while (filled < buf.length) {
        const { bytesRead } = await fh.read(buf, filled, buf.length - filled, filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return filled === buf.length ? buf : buf.subarray(0, filled);
    } catch (err) {
      if (err instanceof BlobStoreError) throw err;
      throw this.fail('get', key, err);
    } finally {
      await fh.close();
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    const path = this.path(key);
    const dir = dirname(path);
    const tmp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw this.fail('put', key, err);
    }
    // The rename is durable only once the directory is: a snapshot that names this object must not outlive it.
    try {
      const dh = await open(dir, 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch (err) {
      throw this.fail('put', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<{ key: string; modified: Date; size: number }> {
    checkPrefix(prefix);
    const cut = prefix.lastIndexOf('/');
    const base = cut < 0 ? '' : prefix.slice(0, cut);
    yield* this.walk(base, prefix);
  }

  /** The objects in directory `rel` (a key path, '' for the root) and below whose keys start with `prefix`. */
  private async *walk(rel: string, prefix: string): AsyncGenerator<{ key: string; modified: Date; size: number }> {
    let dir;
    try {
      dir = await opendir(rel ? join(this.root, ...rel.split('/')) : this.root);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
      throw this.fail('list', prefix || "''", err);
    }
    for await (const entry of dir) {
      // Temporary files and names no key could have are not objects.
      if (!SEGMENT.test(entry.name) || entry.name === '.' || entry.name === '..') continue;
      const key = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        const below = `${key}/`;
        if (below.startsWith(prefix) || prefix.startsWith(below)) yield* this.walk(key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix) && key.length <= MAX_KEY_LENGTH) {
        let st;
        try {
          st = await lstat(join(this.root, ...key.split('/')));
        } catch (err) {
          if (errnoCode(err) === 'ENOENT') continue; // deleted while we looked
          throw this.fail('list', prefix || "''", err);
        }
        if (st.isFile()) yield { key, modified: st.mtime, size: st.size };
      }
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.path(key);
    try {
      await unlink(path);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return;
      throw this.fail('delete', key, err);
    }
  }
}

/** Where an S3Store keeps its objects, and how it reaches them. */
export interface S3StoreOptions {
  /** An S3-compatible endpoint such as `http://127.0.0.1:9000`; unset for AWS S3 itself. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Prepended to every key ('' or ending in '/', which is added when missing); the rest of the bucket is not seen. */
  prefix: string;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Path-style URLs (`endpoint/bucket/key`), which most S3-compatible servers need. */
  forcePathStyle: boolean;
  /** Keys asked for per list request (S3's maximum and default: 1000). */
  pageSize?: number;
}

type S3Sdk = typeof import('@aws-sdk/client-s3');
let sdkModule: Promise<S3Sdk> | undefined;
/** The SDK is loaded on first use: processes that never touch S3 (the CLI, a DirStore host) do not pay its start-up. */
function loadSdk(): Promise<S3Sdk> {
  return (sdkModule ??= import('@aws-sdk/client-s3'));
}

interface S3ErrorShape {
  name?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Objects in a bucket of an S3-compatible store, under a prefix. A PutObject is atomic (readers see the old object or
 * the new one whole) and carries a Content-MD5, so the server rejects a body damaged on the way. A missing object is
 * `undefined` / `false`; anything else the store answers is a {@link BlobStoreError} naming the store, the operation
 * and the key (refused credentials say so). Requests time out when the endpoint stops answering rather than hang.
 */
export class S3Store implements BlobStore {
  readonly description: string;
  readonly bucket: string;
  readonly prefix: string;
  private client?: Promise<{ sdk: S3Sdk; client: S3Client }>;

  constructor(private readonly options: S3StoreOptions) {
    if (!BUCKET_NAME.test(options.bucket)) {
      const name = JSON.stringify(options.bucket);
      throw new BlobStoreError(`invalid S3 bucket name ${name}: expected 3-63 characters of a-z 0-9 . -`);
    }
    const prefix = options.prefix.replace(/^\/+/, '');
    if (prefix) checkKey(prefix.replace(/\/$/, ''));
    this.bucket = options.bucket;
    this.prefix = prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix;
    const where = options.endpoint ? ` at ${options.endpoint}` : ` in ${options.region}`;
    this.description = `s3://${this.bucket}/${this.prefix}${where}`;
  }

  private s3(): Promise<{ sdk: S3Sdk; client: S3Client }> {
    this.client ??= loadSdk().then((sdk) => {
      const { endpoint, region, credentials, forcePathStyle } = this.options;
      const client = new sdk.S3Client({
        ...(endpoint ? { endpoint } : {}),
        region,
        credentials,
        forcePathStyle,
        // Connect within 10 s; a socket silent for 60 s is closed (and the request retried by the SDK).
        requestHandler: { connectionTimeout: 10_000, socketTimeout: 60_000 },
        // S3-compatible servers do not all know the SDK's newer default checksums; Content-MD5 (below) they all do.
        ...(endpoint
          ? { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' }
          : {}),
      });
      return { sdk, client };
    });
    return this.client;
  }

  /** Closes the client's pooled connections; a later call opens new ones. */
  destroy(): void {
    const client = this.client;
    this.client = undefined;
    void client?.then(({ client: c }) => c.destroy()).catch(() => undefined);
  }

  private fail(op: string, key: string, err: unknown): BlobStoreError {
    const e = err as S3ErrorShape;
    const status = e?.$metadata?.httpStatusCode;
    const code = e?.Code ?? e?.name ?? 'Error';
    // A HEAD's answer has no body, so the SDK can name neither the error nor its reason: then the status is all.
    const unnamed = !e?.message || e.message === 'UnknownError';
    const http = status ? ` (HTTP ${status})` : '';
    let reason = unnamed && status ? `HTTP ${status}` : `${code}${http}: ${e?.message || 'no message'}`;
    const credentials = 'TANDEM_S3_CREDENTIAL or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY';
    if (['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken'].includes(code)) {
      reason = `the store refused the credentials (${reason}); check ${credentials}`;
    } else if (status === 403) {
      reason = `access denied (${reason}); check the credentials (${credentials}) and the bucket's policy`;
    } else if (code === 'NoSuchBucket') {
      reason = `bucket ${this.bucket} does not exist (${reason})`;
    }
    return new BlobStoreError(`${this.description}: ${op} ${key} failed: ${reason}`, { cause: err });
  }

  async has(key: string): Promise<boolean> {
    const Key = this.prefix + checkKey(key);
    const { sdk, client } = await this.s3();
    try {
      await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key }));
      return true;
    } catch (err) {
      const e = err as S3ErrorShape;
      if (e?.name === 'NotFound' || e?.name === 'NoSuchKey') return false;
      throw this.fail('has', key, err);
    }
  }

  async get(key: string, maxBytes?: number): Promise<Buffer | undefined> {
    const Key = this.prefix + checkKey(key);
    const { sdk, client } = await this.s3();
    let out;
    try {
      out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      if ((err as S3ErrorShape)?.name === 'NoSuchKey') return undefined;
      throw this.fail('get', key, err);
    }
    const body = out.Body as (AsyncIterable<Uint8Array> & { destroy?: (err?: Error) => void }) | undefined;
    if (!body) return Buffer.alloc(0);
    if (maxBytes !== undefined && out.ContentLength !== undefined && out.ContentLength > maxBytes) {
      body.destroy?.();
      throw new ObjectTooLargeError(key, out.ContentLength, maxBytes, this.description);
    }
    try {
      // Counted as it comes, whatever the length header said.
      return await readBounded(body, maxBytes, (received) => {
        throw new ObjectTooLargeError(key, received, maxBytes!, this.description, false);
      });
    } catch (err) {
      if (err instanceof BlobStoreError) throw err;
      throw this.fail('get', key, err);
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    const Key = this.prefix + checkKey(key);
    const { sdk, client } = await this.s3();
    try {
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: data,
          ContentLength: data.length,
          ContentMD5: createHash('md5').update(data).digest('base64'),
          ContentType: 'application/octet-stream',
        }),
      );
    } catch (err) {
      throw this.fail('put', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<{ key: string; modified: Date; size: number }> {
    checkPrefix(prefix);
    const { sdk, client } = await this.s3();
    let ContinuationToken: string | undefined;
    do {
      let page;
      try {
        page = await client.send(
          new sdk.ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            ContinuationToken,
            MaxKeys: this.options.pageSize ?? 1000,
          }),
        );
      } catch (err) {
        throw this.fail('list', prefix || "''", err);
      }
      for (const item of page.Contents ?? []) {
        const key = item.Key?.slice(this.prefix.length);
        if (!key || !item.Key!.startsWith(this.prefix) || !isValidKey(key)) continue; // not one of ours
        yield { key, modified: item.LastModified ?? new Date(0), size: item.Size ?? 0 };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async delete(key: string): Promise<void> {
    const Key = this.prefix + checkKey(key);
    const { sdk, client } = await this.s3();
    try {
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      if ((err as S3ErrorShape)?.name === 'NoSuchKey' || (err as S3ErrorShape)?.name === 'NotFound') return;
      throw this.fail('delete', key, err);
    }
  }
}

/** The store's directory when `TANDEM_SNAPSHOT_STORE` names none: /var/lib/tandem/snapshots as root, else one in TMPDIR. */
export function defaultStoreDir(): string {
  const uid = process.getuid?.();
  return uid === 0 ? '/var/lib/tandem/snapshots' : `${process.env.TMPDIR ?? '/tmp'}/tandem-snapshots-${uid ?? 'user'}`;
}

/** The settings {@link blobStoreFromEnv} reads (parsed by `src/config/env.ts`). */
export interface SnapshotStoreSettings {
  TANDEM_SNAPSHOT_STORE?: string;
  TANDEM_S3_ENDPOINT?: string;
  TANDEM_S3_REGION?: string;
  TANDEM_S3_CREDENTIAL?: string;
}

/**
 * The snapshot store this process is configured for:
 *
 * - `TANDEM_SNAPSHOT_STORE` unset: a {@link DirStore} at `defaultDir` (the caller's default, e.g. beside the hands
 *   directory);
 * - an absolute directory path or `file:///path`: a {@link DirStore} there (for several hosts: a shared mount);
 * - `s3://bucket/prefix`: an {@link S3Store}, at `TANDEM_S3_ENDPOINT` (e.g. `http://127.0.0.1:9000`, with path-style
 *   addressing) or AWS S3 itself when unset, in `TANDEM_S3_REGION` (default `us-east-1`). Credentials: the vault
 *   secret named by `TANDEM_S3_CREDENTIAL`, whose value is `<access key id>:<secret access key>`, else the
 *   environment's `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` when set).
 *
 * A bad or missing setting is a {@link BlobStoreError} of one sentence that names the variable at fault. The
 * credential's value never appears in an error.
 */
export function blobStoreFromEnv(
  settings: SnapshotStoreSettings,
  options: { defaultDir: string; vault?: { get(name: string): string | undefined }; env?: NodeJS.ProcessEnv },
): BlobStore {
  const value = settings.TANDEM_SNAPSHOT_STORE?.trim();
  if (!value) return new DirStore(options.defaultDir);
  if (value.startsWith('file:')) {
    let path: string;
    try {
      path = fileURLToPath(value);
    } catch (err) {
      const why = (err as Error).message;
      throw new BlobStoreError(`TANDEM_SNAPSHOT_STORE: ${value} is not a file URL of a local directory (${why})`);
    }
    return new DirStore(path);
  }
  if (value.startsWith('s3:')) return s3StoreFromEnv(value, settings, options.vault, options.env ?? process.env);
  if (!isAbsolute(value)) {
    throw new BlobStoreError(
      `TANDEM_SNAPSHOT_STORE: expected an absolute directory path, file:///path or s3://bucket/prefix, ` +
        `not ${JSON.stringify(value)}`,
    );
  }
  return new DirStore(value);
}

function s3StoreFromEnv(
  value: string,
  settings: SnapshotStoreSettings,
  vault: { get(name: string): string | undefined } | undefined,
  env: NodeJS.ProcessEnv,
): S3Store {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(value);
  if (!m || !BUCKET_NAME.test(m[1]!)) {
    throw new BlobStoreError(
      `TANDEM_SNAPSHOT_STORE: expected s3://bucket/prefix with a bucket name of a-z 0-9 . -, ` +
        `not ${JSON.stringify(value)}`,
    );
  }
  const prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix && !isValidKey(prefix)) {
    throw new BlobStoreError(
      `TANDEM_SNAPSHOT_STORE: the prefix ${JSON.stringify(prefix)} of ${value} must be '/'-separated segments ` +
        `of A-Z a-z 0-9 . _ -`,
    );
  }
  const endpoint = settings.TANDEM_S3_ENDPOINT?.trim().replace(/\/+$/, '') || undefined;
  if (endpoint) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    if (!url || !['http:', 'https:'].includes(url.protocol) || !['/', ''].includes(url.pathname) || url.search) {
      throw new BlobStoreError(
        `TANDEM_S3_ENDPOINT: expected http(s)://host[:port] (e.g. http://127.0.0.1:9000), ` +
          `not ${JSON.stringify(endpoint)}`,
      );
    }
  }
  return new S3Store({
    endpoint,
    region: settings.TANDEM_S3_REGION?.trim() || 'us-east-1',
    bucket: m[1]!,
    prefix,
    credentials: s3Credentials(settings.TANDEM_S3_CREDENTIAL, vault, env),
    forcePathStyle: endpoint !== undefined,
  });
}

function s3Credentials(
  secretName: string | undefined,
  vault: { get(name: string): string | undefined } | undefined,
  env: NodeJS.ProcessEnv,
): S3StoreOptions['credentials'] {
  if (secretName) {
    const named = `TANDEM_S3_CREDENTIAL names the vault secret "${secretName}"`;
    if (!vault) throw new BlobStoreError(`${named}, but this process has no vault`);
    const secret = vault.get(secretName);
    if (secret === undefined) {
      throw new BlobStoreError(`${named}, which is not set (tandem vault set ${secretName})`);
    }
    const colon = secret.indexOf(':');
    if (colon <= 0 || colon === secret.length - 1) {
      throw new BlobStoreError(`${named}, whose value is not of the form <access key id>:<secret access key>`);
    }
    return { accessKeyId: secret.slice(0, colon).trim(), secretAccessKey: secret.slice(colon + 1).trim() };
  }
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (accessKeyId && secretAccessKey) {
    return { accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
  }
  if (accessKeyId || secretAccessKey) {
    const [missing, set] = accessKeyId
      ? ['AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID']
      : ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'];
    throw new BlobStoreError(`${missing} is not set, but ${set} is: an S3 snapshot store needs both`);
  }
  throw new BlobStoreError(
    'TANDEM_SNAPSHOT_STORE is an s3:// store but no credentials are set: set TANDEM_S3_CREDENTIAL to a vault secret ' +
      '"<access key id>:<secret access key>", or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
  );
}
