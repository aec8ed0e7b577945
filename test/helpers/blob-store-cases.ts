/**
 * The contract of a BlobStore, as test cases that every store must pass: DirStore in test/unit/blob-store.test.ts,
 * S3Store on a real MinIO in test/integration/blob-store-s3.test.ts.
 */
import { expect, it } from 'vitest';
import { BlobStoreError, ObjectTooLargeError, type BlobStore } from '../../src/activities/sandbox/blob-store.js';

/** Everything `list(prefix)` yields, sorted by key. */
export async function listAll(
  store: BlobStore,
  prefix: string,
): Promise<{ key: string; modified: Date; size: number }[]> {
  const out = [];
  for await (const item of store.list(prefix)) out.push(item);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Keys no store may take: they could leave the store's directory or prefix, or are not plain ASCII paths. */
export const BAD_KEYS = [
  '',
  '/',
  '/etc/passwd',
  'objects/../../etc/passwd',
  '..',
  '.',
  'a/./b',
  'a//b',
  'a/',
  '/a',
  'a\\b',
  'a b',
  'a\nb',
  'ключ',
  'a/b?c',
  'x'.repeat(256),
  `${'x'.repeat(255)}/${'y'.repeat(255)}/z`,
];

/**
 * Defines the conformance cases in the calling `describe`. `makeStore` gives a fresh, empty store for each case (a
 * new directory, or a new prefix in the bucket).
 */
export function blobStoreCases(makeStore: () => Promise<BlobStore> | BlobStore): void {
  it('has no object it was not given: has is false, get undefined, delete no error', async () => {
    const store = await makeStore();
    expect(await store.has('objects/ab/abcdef')).toBe(false);
    expect(await store.get('objects/ab/abcdef')).toBeUndefined();
    expect(await store.get('objects/ab/abcdef', 10)).toBeUndefined();
    await store.delete('objects/ab/abcdef');
    expect(await listAll(store, '')).toEqual([]);
  });

  it('gives back the exact bytes put, replaces an object, keeps empty objects', async () => {
    const store = await makeStore();
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await store.put('objects/00/all-bytes', bytes);
    expect(await store.has('objects/00/all-bytes')).toBe(true);
    expect((await store.get('objects/00/all-bytes'))?.equals(bytes)).toBe(true);

    await store.put('hosts/h1.json', Buffer.from('{"v":1}'));
    await store.put('hosts/h1.json', Buffer.from('{"v":2,"longer":true}'));
    expect((await store.get('hosts/h1.json'))?.toString()).toBe('{"v":2,"longer":true}');
    await store.put('hosts/h1.json', Buffer.from('{}'));
    expect((await store.get('hosts/h1.json'))?.toString()).toBe('{}');

    await store.put('empty', Buffer.alloc(0));
    expect(await store.has('empty')).toBe(true);
    const empty = await store.get('empty', 0);
    expect(empty).toBeInstanceOf(Buffer);
    expect(empty?.length).toBe(0);
  });

  it('lists the keys under a prefix with their size and time, and none of another prefix', async () => {
    const store = await makeStore();
    const before = Date.now();
    const keys = ['objects/ab/ab01', 'objects/ab/ab02', 'objects/cd/cd01', 'hosts/h1.json', 'top'];
    for (const [i, key] of keys.entries()) await store.put(key, Buffer.alloc(i + 1, 'x'));

    const all = await listAll(store, '');
    expect(all.map((o) => o.key)).toEqual([...keys].sort());
    for (const o of all) {
      expect(o.size).toBe(keys.indexOf(o.key) + 1);
      expect(o.modified).toBeInstanceOf(Date);
      // Stores keep times to the second at least; a minute's slack covers clock skew between host and server.
      expect(o.modified.getTime()).toBeGreaterThan(before - 60_000);
      expect(o.modified.getTime()).toBeLessThan(Date.now() + 60_000);
    }
    const objects = ['objects/ab/ab01', 'objects/ab/ab02', 'objects/cd/cd01'];
    expect((await listAll(store, 'objects/')).map((o) => o.key)).toEqual(objects);
    expect((await listAll(store, 'objects/ab/')).map((o) => o.key)).toEqual(['objects/ab/ab01', 'objects/ab/ab02']);
    // A prefix is the start of a key, not only whole segments.
    expect((await listAll(store, 'objects/a')).map((o) => o.key)).toEqual(['objects/ab/ab01', 'objects/ab/ab02']);
    expect((await listAll(store, 'objects/ab/ab0')).map((o) => o.key)).toEqual(['objects/ab/ab01', 'objects/ab/ab02']);
    expect((await listAll(store, 'hosts/h1.json')).map((o) => o.key)).toEqual(['hosts/h1.json']);
    expect((await listAll(store, 'ho')).map((o) => o.key)).toEqual(['hosts/h1.json']);
    expect(await listAll(store, 'nothing/')).toEqual([]);
    expect(await listAll(store, 'objects/ef/')).toEqual([]);
  });

  it('lists many keys whole (across pages)', async () => {
    const store = await makeStore();
    const keys = Array.from({ length: 25 }, (_, i) => `objects/${(i % 3).toString().padStart(2, '0')}/k${i}`);
    await Promise.all(keys.map((key) => store.put(key, Buffer.from(key))));
    expect((await listAll(store, 'objects/')).map((o) => o.key)).toEqual([...keys].sort());
    expect((await listAll(store, 'objects/01/')).length).toBe(keys.filter((k) => k.startsWith('objects/01/')).length);
  });

  it('deletes: the object is gone from has, get and list; others stay', async () => {
    const store = await makeStore();
    await store.put('objects/ab/ab01', Buffer.from('one'));
    await store.put('objects/ab/ab02', Buffer.from('two'));
    await store.delete('objects/ab/ab01');
    expect(await store.has('objects/ab/ab01')).toBe(false);
    expect(await store.get('objects/ab/ab01')).toBeUndefined();
    expect((await listAll(store, '')).map((o) => o.key)).toEqual(['objects/ab/ab02']);
    await store.delete('objects/ab/ab01');
    await store.put('objects/ab/ab01', Buffer.from('again'));
    expect((await store.get('objects/ab/ab01'))?.toString()).toBe('again');
  });

  it('refuses a bad key in every operation, with an error naming it', async () => {
    const store = await makeStore();
    for (const key of BAD_KEYS) {
      const named = new RegExp(`invalid object key ${escape(JSON.stringify(key))}`);
      await expect(store.has(key), key).rejects.toThrow(named);
      await expect(store.get(key), key).rejects.toThrow(named);
      await expect(store.put(key, Buffer.from('x')), key).rejects.toThrow(named);
      await expect(store.delete(key), key).rejects.toThrow(named);
      await expect(store.get(key)).rejects.toBeInstanceOf(BlobStoreError);
    }
    for (const prefix of ['/', '../', 'a/../', 'a//', '/etc', 'a b', 'ключ/']) {
      await expect(listAll(store, prefix), prefix).rejects.toThrow(/invalid list prefix/);
    }
    expect(await listAll(store, '')).toEqual([]);
    // Keys that are fine: dots inside segments, dashes, underscores, a segment of dots that is not '.' or '..'.
    for (const key of ['a.b/c_d-e', '.hidden', '...', `${'x'.repeat(255)}/${'y'.repeat(255)}`]) {
      await store.put(key, Buffer.from(key));
      expect((await store.get(key))?.toString()).toBe(key);
    }
  });

  it('refuses an object larger than maxBytes, and gives one of exactly maxBytes', async () => {
    const store = await makeStore();
    await store.put('objects/big', Buffer.alloc(1000, 'b'));
    const err = await store.get('objects/big', 999).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectTooLargeError);
    expect(String(err)).toMatch(/objects\/big is larger than 999 bytes/);
    expect(String(err)).toContain(store.description);
    expect((await store.get('objects/big', 1000))?.length).toBe(1000);
    expect((await store.get('objects/big'))?.length).toBe(1000);
  });

  it('never shows a reader a part of an object, while it is written and rewritten', async () => {
    const store = await makeStore();
    const size = 4 * 1024 * 1024;
    const versions = ['a', 'b', 'c', 'd'].map((fill) => Buffer.alloc(size, fill));
    const seen = new Set<string>();
    let writing = true;
    const reader = async () => {
      let reads = 0;
      // At least a few reads, and then on until the writer is done.
      while (writing || reads < 3) {
        const got = await store.get('objects/ab/large');
        reads++;
        if (got === undefined) {
          seen.add('none');
          continue;
        }
        expect(got.length).toBe(size);
        const fill = String.fromCharCode(got[0]!);
        expect(got.equals(Buffer.alloc(size, fill)), `a read of ${got.length} bytes mixes versions`).toBe(true);
        seen.add(fill);
      }
    };
    const writer = async () => {
      try {
        for (const data of versions) await store.put('objects/ab/large', data);
      } finally {
        writing = false;
      }
    };
    await Promise.all([writer(), reader(), reader()]);
    // Every read was no object or a whole version; the last version is what stays.
    expect([...seen].every((s) => s === 'none' || 'abcd'.includes(s))).toBe(true);
    expect((await store.get('objects/ab/large'))?.equals(versions[3]!)).toBe(true);
  });

  it('takes concurrent puts of one key: one of them wins whole', async () => {
    const store = await makeStore();
    const size = 512 * 1024;
    await Promise.all(['p', 'q', 'r', 's'].map((fill) => store.put('hosts/h1.json', Buffer.alloc(size, fill))));
    const got = await store.get('hosts/h1.json');
    expect(got?.length).toBe(size);
    expect(got?.equals(Buffer.alloc(size, String.fromCharCode(got[0]!)))).toBe(true);
    expect((await listAll(store, '')).map((o) => o.key)).toEqual(['hosts/h1.json']);
  });
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
