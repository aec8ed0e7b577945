/**
 * S3Store against a real S3-compatible server: MinIO on loopback (built by `scripts/setup --tests`). The same
 * conformance cases as DirStore, then what only S3 has: prefixes sharing a bucket, refused credentials, and a large
 * object refused without its bytes crossing the wire.
 */
import { mkdtempSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blobStoreFromEnv,
  ObjectTooLargeError,
  S3Store,
  type S3StoreOptions,
} from '../../src/activities/sandbox/blob-store.js';
import { Vault } from '../../src/vault/index.js';
import { blobStoreCases, listAll } from '../helpers/blob-store-cases.js';
import { startMinio, type Minio } from '../helpers/minio.js';

let minio: Minio;
const stores: S3Store[] = [];
let n = 0;

beforeAll(async () => {
  minio = await startMinio();
});

afterAll(async () => {
  for (const store of stores) store.destroy();
  await minio?.stop();
});

/** A store on the test's MinIO, under a prefix of its own unless given one; destroyed after the file. */
function s3Store(options: Partial<S3StoreOptions> = {}): S3Store {
  const store = new S3Store({
    endpoint: minio.endpoint,
    region: 'us-east-1',
    bucket: minio.bucket,
    prefix: `case-${++n}`,
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    forcePathStyle: true,
    // Small pages, so that the listing cases cross page boundaries.
    pageSize: 10,
    ...options,
  });
  stores.push(store);
  return store;
}

describe('S3Store on MinIO: the BlobStore contract', () => {
  blobStoreCases(() => s3Store());
});

describe('S3Store on MinIO', () => {
  it('sees only its own prefix of a shared bucket, and never objects whose names are not keys', async () => {
    const a = s3Store({ prefix: 'tenant' });
    const b = s3Store({ prefix: 'tenant-2/' });
    expect(a.description).toBe(`s3://${minio.bucket}/tenant/ at ${minio.endpoint}`);
    await a.put('objects/ab/one', Buffer.from('a'));
    await b.put('objects/ab/one', Buffer.from('b'));
    // Another program's object under the same prefix, with a name no key can have.
    const raw = new S3Client({
      endpoint: minio.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    });
    try {
      await raw.send(new PutObjectCommand({ Bucket: minio.bucket, Key: 'tenant/objects/has space', Body: 'x' }));
    } finally {
      raw.destroy();
    }
    expect((await a.get('objects/ab/one'))?.toString()).toBe('a');
    expect((await b.get('objects/ab/one'))?.toString()).toBe('b');
    expect((await listAll(a, '')).map((o) => o.key)).toEqual(['objects/ab/one']);
    await a.delete('objects/ab/one');
    expect(await b.has('objects/ab/one')).toBe(true);
  });

  it('says when the store refuses the credentials, in every operation, without showing the secret', async () => {
    const good = s3Store();
    await good.put('hosts/h1.json', Buffer.from('{}'));
    const wrongSecret = s3Store({
      prefix: good.prefix,
      credentials: { accessKeyId: minio.accessKey, secretAccessKey: 'not-the-secret-0123456789' },
    });
    const unknownKey = s3Store({
      prefix: good.prefix,
      credentials: { accessKeyId: 'nobody-at-all', secretAccessKey: 'not-the-secret-0123456789' },
    });
    const where = `s3://${minio.bucket}/${good.prefix} at ${minio.endpoint}`;
    await expect(wrongSecret.put('hosts/h2.json', Buffer.from('{}'))).rejects.toThrow(
      `${where}: put hosts/h2.json failed: the store refused the credentials (SignatureDoesNotMatch (HTTP 403): `,
    );
    const refused = 'failed: the store refused the credentials';
    await expect(wrongSecret.get('hosts/h1.json')).rejects.toThrow(`get hosts/h1.json ${refused}`);
    await expect(listAll(wrongSecret, '')).rejects.toThrow(/list '' failed: the store refused the credentials/);
    await expect(unknownKey.get('hosts/h1.json')).rejects.toThrow(
      /the store refused the credentials \(InvalidAccessKeyId \(HTTP 403\): .*\); check TANDEM_S3_CREDENTIAL or AWS_/,
    );
    // A HEAD's answer has no body to name the reason: the status is what there is.
    const head = await unknownKey.has('hosts/h1.json').catch((e: unknown) => e as Error);
    expect(head).toBeInstanceOf(Error);
    expect((head as Error).message).toBe(
      `${where}: has hosts/h1.json failed: access denied (HTTP 403); check the credentials ` +
        `(TANDEM_S3_CREDENTIAL or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket's policy`,
    );
    // A delete of a missing object is no error, but a refused one is.
    await expect(unknownKey.delete('hosts/h1.json')).rejects.toThrow(/refused the credentials|access denied/);
    const errors = await Promise.all([wrongSecret.get('x').catch(String), unknownKey.has('x').catch(String)]);
    for (const err of errors) expect(err).not.toContain('not-the-secret');
    expect(await good.has('hosts/h2.json')).toBe(false);
  });

  it('refuses an object over maxBytes without its bytes crossing the wire', async () => {
    const size = 64 * 1024 * 1024;
    const direct = s3Store();
    await direct.put('objects/ff/huge', Buffer.alloc(size, 'h'));
    // A loopback relay between the store and MinIO counts what the server sends.
    const relay = await startRelay(Number(new URL(minio.endpoint).port));
    try {
      const viaRelay = s3Store({ prefix: direct.prefix, endpoint: `http://127.0.0.1:${relay.port}` });
      const err = (await viaRelay.get('objects/ff/huge', 1024 * 1024).catch((e: unknown) => e)) as ObjectTooLargeError;
      expect(err).toBeInstanceOf(ObjectTooLargeError);
      expect(err.size).toBe(size);
      expect(err.message).toMatch(/objects\/ff\/huge is larger than 1048576 bytes \(67108864 bytes\); refused/);
      // The body was abandoned: its connection closes, having carried a small part of the object (socket buffers).
      await relay.allClosed();
      expect(relay.fromServer()).toBeLessThan(size / 4);
      // A small one through the same relay comes whole.
      const small = s3Store({ prefix: direct.prefix, endpoint: `http://127.0.0.1:${relay.port}` });
      await direct.put('objects/ff/small', Buffer.alloc(1000, 's'));
      expect((await small.get('objects/ff/small', 1000))?.length).toBe(1000);
    } finally {
      await relay.close();
    }
  });

  it('names the store when nothing answers at its endpoint', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as { port: number };
        srv.close(() => resolve(port));
      });
    });
    const store = s3Store({ endpoint: `http://127.0.0.1:${closed}` });
    const err = String(await store.get('hosts/h1.json').catch((e: unknown) => e));
    expect(err).toContain(`${store.description}: get hosts/h1.json failed: `);
    expect(err).toContain('ECONNREFUSED');
  });

  it('is what blobStoreFromEnv builds for s3://bucket/prefix with a vault credential', async () => {
    const vault = new Vault(join(mkdtempSync(join(tmpdir(), 'tandem-vault-')), 'vault.json'), {});
    vault.set('minio', `${minio.accessKey}:${minio.secretKey}`);
    const store = blobStoreFromEnv(
      {
        TANDEM_SNAPSHOT_STORE: `s3://${minio.bucket}/from-env/snapshots`,
        TANDEM_S3_ENDPOINT: `${minio.endpoint}/`,
        TANDEM_S3_CREDENTIAL: 'minio',
      },
      { defaultDir: '/nonexistent', vault, env: {} },
    ) as S3Store;
    stores.push(store);
    expect(store.description).toBe(`s3://${minio.bucket}/from-env/snapshots/ at ${minio.endpoint}`);
    await store.put('hosts/h1.json', Buffer.from('{"host":"h1"}'));
    expect((await store.get('hosts/h1.json'))?.toString()).toBe('{"host":"h1"}');
    const fromAws = blobStoreFromEnv(
      { TANDEM_SNAPSHOT_STORE: `s3://${minio.bucket}/from-env/snapshots`, TANDEM_S3_ENDPOINT: minio.endpoint },
      {
        defaultDir: '/nonexistent',
        env: { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey },
      },
    ) as S3Store;
    stores.push(fromAws);
    expect((await listAll(fromAws, 'hosts/')).map((o) => o.key)).toEqual(['hosts/h1.json']);
  });
});

/** A TCP relay on loopback to `port`, counting the bytes the server sent through it. */
async function startRelay(port: number): Promise<{
  port: number;
  fromServer(): number;
  allClosed(): Promise<void>;
  close(): Promise<void>;
}> {
  let fromServer = 0;
  const open = new Set<Socket>();
  let changed: () => void = () => {};
  const server: Server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    open.add(client);
    upstream.on('data', (chunk: Buffer) => (fromServer += chunk.length));
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      if (open.delete(client)) changed();
    };
    client.once('close', end);
    upstream.once('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    fromServer: () => fromServer,
    allClosed: () =>
      new Promise<void>((resolve) => {
        const check = () => (open.size === 0 ? resolve() : undefined);
        changed = check;
        check();
      }),
    close: () => {
      for (const s of open) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
