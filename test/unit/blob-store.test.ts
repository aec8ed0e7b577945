import { mkdtempSync, readdirSync, statSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  BlobStoreError,
  blobStoreFromEnv,
  DirStore,
  ObjectTooLargeError,
  readBounded,
  S3Store,
} from '../../src/activities/sandbox/blob-store.js';
import { blobStoreCases, listAll } from '../helpers/blob-store-cases.js';

const scratch = mkdtempSync(join(tmpdir(), 'tandem-blob-'));
let n = 0;
const freshDir = () => join(scratch, `store-${++n}`, 'snapshots');

/** Every file and directory under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

describe('DirStore: the BlobStore contract', () => {
  blobStoreCases(() => new DirStore(freshDir()));
});

describe('DirStore', () => {
  it('makes its root 0700, directories 0700 and objects 0600, and leaves no temporary file', async () => {
    const root = freshDir();
    const store = new DirStore(root);
    expect(store.description).toBe(`dir:${root}`);
    expect(statSync(root).mode & 0o777).toBe(0o700);
    await store.put('objects/ab/abcdef', Buffer.from('x'));
    await store.put('objects/ab/abcdef', Buffer.from('y'));
    expect(statSync(join(root, 'objects')).mode & 0o777).toBe(0o700);
    expect(statSync(join(root, 'objects/ab')).mode & 0o777).toBe(0o700);
    expect(statSync(join(root, 'objects/ab/abcdef')).mode & 0o777).toBe(0o600);
    expect(tree(root)).toEqual(['objects', 'objects/ab', 'objects/ab/abcdef']);
  });

  it('does not list temporary files, symlinks or names that are not keys', async () => {
    const root = freshDir();
    const store = new DirStore(root);
    await store.put('objects/ab/abcdef', Buffer.from('x'));
    // What a put cut short by a crash leaves, and what others may drop in the directory.
    writeFileSync(join(root, 'objects/ab/.tmp+0123456789abcdef'), 'part');
    writeFileSync(join(root, 'objects/ab/not a key'), 'stranger');
    symlinkSync('/etc/passwd', join(root, 'objects/ab/link'));
    mkdirSync(join(root, 'objects/empty-dir'));
    expect((await listAll(store, '')).map((o) => o.key)).toEqual(['objects/ab/abcdef']);
    // A symlink and a directory are no objects: nothing outside the store is read through a key.
    expect(await store.get('objects/ab/link')).toBeUndefined();
    expect(await store.has('objects/ab/link')).toBe(false);
    expect(await store.get('objects/empty-dir')).toBeUndefined();
    expect(await store.has('objects/empty-dir')).toBe(false);
    await store.delete('objects/empty-dir');
  });

  it('removes what a failed put wrote, and names the key', async () => {
    const root = freshDir();
    const store = new DirStore(root);
    await store.put('a/b/c', Buffer.from('deeper'));
    // a/b is a directory here, so it cannot also be an object.
    const err = await store.put('a/b', Buffer.from('x')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobStoreError);
    expect(String(err)).toMatch(new RegExp(`dir:${root}: put a/b failed`));
    await store.put('f', Buffer.from('file'));
    await expect(store.put('f/g', Buffer.from('x'))).rejects.toThrow(/put f\/g failed/);
    expect(tree(root)).toEqual(['a', 'a/b', 'a/b/c', 'f']);
    expect((await store.get('a/b/c'))?.toString()).toBe('deeper');
  });

  it('keeps its objects under the root whatever the key', async () => {
    const root = freshDir();
    const store = new DirStore(root);
    await expect(store.put('../escape', Buffer.from('x'))).rejects.toThrow(/invalid object key "..\/escape"/);
    await expect(store.get('/etc/passwd')).rejects.toThrow(/invalid object key "\/etc\/passwd"/);
    expect(readdirSync(join(root, '..'))).toEqual(['snapshots']);
  });

  it('reads no more than the file it opened, and refuses one over maxBytes before reading it', async () => {
    const root = freshDir();
    const store = new DirStore(root);
    await store.put('big', Buffer.alloc(64 * 1024, 1));
    const err = (await store.get('big', 1024).catch((e: unknown) => e)) as ObjectTooLargeError;
    expect(err).toBeInstanceOf(ObjectTooLargeError);
    expect(err.size).toBe(64 * 1024);
    expect(err.maxBytes).toBe(1024);
    expect(err.message).toBe(`dir:${root}: object big is larger than 1024 bytes (65536 bytes); refused`);
  });
});

describe('readBounded', () => {
  it('stops an endless stream once it passes maxBytes and destroys it', async () => {
    let produced = 0;
    const endless = new Readable({
      read() {
        produced += 16 * 1024;
        this.push(Buffer.alloc(16 * 1024));
      },
    });
    const err = await readBounded(endless, 100_000, (received) => {
      throw new Error(`too large: ${received}`);
    }).catch((e: unknown) => e);
    expect(String(err)).toMatch(/too large: 114688$/); // up to the chunk that crossed 100000: 7 × 16 KiB
    expect(endless.destroyed).toBe(true);
    expect(produced).toBeLessThan(1024 * 1024);
  });

  it('reads a stream whole up to and including maxBytes', async () => {
    const chunks = [Buffer.from('ab'), new Uint8Array([99, 100]), Buffer.from('e')];
    const never = (): never => {
      throw new Error('refused');
    };
    expect((await readBounded(Readable.from(chunks), 5, never)).toString()).toBe('abcde');
    expect((await readBounded(Readable.from([]), 0, never)).length).toBe(0);
    expect((await readBounded(Readable.from(chunks), undefined, never)).toString()).toBe('abcde');
  });
});

describe('blobStoreFromEnv', () => {
  const vault = { get: (name: string) => ({ 's3-key': 'AKIDEXAMPLE:wJalr/XUtnFEMI+K7MDENG', bad: 'no-colon' })[name] };
  const defaultDir = () => freshDir();

  it('is a directory by default, at an absolute path, or at a file URL', () => {
    const dir = defaultDir();
    expect(blobStoreFromEnv({}, { defaultDir: dir }).description).toBe(`dir:${dir}`);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const other = freshDir();
    expect(blobStoreFromEnv({ TANDEM_SNAPSHOT_STORE: other }, { defaultDir: dir }).description).toBe(`dir:${other}`);
    const url = freshDir();
    expect(blobStoreFromEnv({ TANDEM_SNAPSHOT_STORE: pathToFileURL(url).href }, { defaultDir: dir }).description).toBe(
      `dir:${url}`,
    );
    expect(() => blobStoreFromEnv({ TANDEM_SNAPSHOT_STORE: 'relative/dir' }, { defaultDir: dir })).toThrow(
      'TANDEM_SNAPSHOT_STORE: expected an absolute directory path, file:///path or s3://bucket/prefix, ' +
        'not "relative/dir"',
    );
    expect(() => blobStoreFromEnv({ TANDEM_SNAPSHOT_STORE: 'file://remote-host/x' }, { defaultDir: dir })).toThrow(
      /^TANDEM_SNAPSHOT_STORE: file:\/\/remote-host\/x is not a file URL of a local directory/,
    );
  });

  it('is an S3 store for s3://bucket/prefix, at the endpoint or AWS, with vault or AWS_* credentials', () => {
    const dir = defaultDir();
    const s3 = blobStoreFromEnv(
      {
        TANDEM_SNAPSHOT_STORE: 's3://snapshots/tandem/prod',
        TANDEM_S3_ENDPOINT: 'http://127.0.0.1:9000',
        TANDEM_S3_CREDENTIAL: 's3-key',
      },
      { defaultDir: dir, vault, env: {} },
    );
    expect(s3).toBeInstanceOf(S3Store);
    expect(s3.description).toBe('s3://snapshots/tandem/prod/ at http://127.0.0.1:9000');
    const aws = blobStoreFromEnv(
      { TANDEM_SNAPSHOT_STORE: 's3://snapshots', TANDEM_S3_REGION: 'eu-west-1' },
      { defaultDir: dir, env: { AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'secret' } },
    );
    expect(aws.description).toBe('s3://snapshots/ in eu-west-1');
    const dflt = blobStoreFromEnv(
      { TANDEM_SNAPSHOT_STORE: 's3://snapshots/p/' },
      { defaultDir: dir, env: { AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'secret' } },
    );
    expect(dflt.description).toBe('s3://snapshots/p/ in us-east-1');
  });

  it('says which variable is at fault, never showing a secret', () => {
    const dir = defaultDir();
    const aws = { AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'secret' };
    /** The error of blobStoreFromEnv for an s3:// store with these settings: one sentence that starts with a name. */
    const errorOf = (settings: Record<string, string>, env: NodeJS.ProcessEnv = {}, withVault = true): string => {
      try {
        const store = { TANDEM_SNAPSHOT_STORE: 's3://snapshots/p', ...settings };
        blobStoreFromEnv(store, { defaultDir: dir, vault: withVault ? vault : undefined, env });
      } catch (err) {
        expect(err).toBeInstanceOf(BlobStoreError);
        return (err as Error).message;
      }
      throw new Error('no error');
    };
    expect(errorOf({})).toBe(
      'TANDEM_SNAPSHOT_STORE is an s3:// store but no credentials are set: set TANDEM_S3_CREDENTIAL to a vault ' +
        'secret "<access key id>:<secret access key>", or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
    );
    expect(errorOf({}, { AWS_ACCESS_KEY_ID: 'AKID' })).toMatch(/^AWS_SECRET_ACCESS_KEY is not set, but AWS_ACCESS_KEY/);
    expect(errorOf({}, { AWS_SECRET_ACCESS_KEY: 'x' })).toMatch(/^AWS_ACCESS_KEY_ID is not set, but AWS_SECRET_ACCESS/);
    expect(errorOf({ TANDEM_S3_CREDENTIAL: 'missing' })).toBe(
      'TANDEM_S3_CREDENTIAL names the vault secret "missing", which is not set (tandem vault set missing)',
    );
    expect(errorOf({ TANDEM_S3_CREDENTIAL: 's3-key' }, {}, false)).toMatch(/^TANDEM_S3_CREDENTIAL .* has no vault$/);
    const bad = errorOf({ TANDEM_S3_CREDENTIAL: 'bad' });
    expect(bad).toBe(
      'TANDEM_S3_CREDENTIAL names the vault secret "bad", whose value is not of the form ' +
        '<access key id>:<secret access key>',
    );
    expect(bad).not.toContain('no-colon');
    expect(errorOf({ TANDEM_S3_ENDPOINT: '127.0.0.1:9000' }, aws)).toMatch(/^TANDEM_S3_ENDPOINT: expected http/);
    expect(errorOf({ TANDEM_S3_ENDPOINT: 'http://minio:9000/path' }, aws)).toMatch(/^TANDEM_S3_ENDPOINT: /);
    expect(errorOf({ TANDEM_SNAPSHOT_STORE: 's3://Bad_Bucket/p' })).toMatch(/^TANDEM_SNAPSHOT_STORE: expected s3:\/\//);
    expect(errorOf({ TANDEM_SNAPSHOT_STORE: 's3://bucket/a/../b' })).toMatch(/^TANDEM_SNAPSHOT_STORE: the prefix "a/);
  });
});
