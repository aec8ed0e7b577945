/**
 * The Files API's parts that need no server: the multipart reader (hostile bodies are a 400, never a crash or a
 * guess) and the file store on a disk that fills up (a clear error, and nothing of the file kept).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DirStore } from '../../src/activities/sandbox/blob-store.js';
import { FileStore, FileStoreError } from '../../src/files/store.js';
import { parseMultipart } from '../../src/server/files.js';
import { ApiError } from '../../src/server/http.js';

const type = 'multipart/form-data; boundary=XyZ';
const part = (headers: string, data: string | Buffer) => Buffer.concat([Buffer.from(`--XyZ\r\n${headers}\r\n\r\n`), Buffer.from(data), Buffer.from('\r\n')]);
const end = Buffer.from('--XyZ--\r\n');

describe('parseMultipart', () => {
  it('reads each part with its name, filename, type and exact bytes', () => {
    const bin = Buffer.from([0, 13, 10, 45, 45, 255]);
    const parts = parseMultipart(
      Buffer.concat([
        part('Content-Disposition: form-data; name="file"; filename="a b.bin"\r\nContent-Type: image/png', bin),
        part('Content-Disposition: form-data; name="expires_in_seconds"', '3600'),
        part('Content-Disposition: form-data; name="raw"', bin),
        end,
      ]),
      type,
    );
    expect(parts.map((p) => [p.name, p.filename, p.type])).toEqual([
      ['file', 'a b.bin', 'image/png'],
      ['expires_in_seconds', undefined, undefined],
      ['raw', undefined, undefined],
    ]);
    expect(parts[0]!.data).toEqual(bin);
    expect(parts[2]!.data).toEqual(bin);
  });

  it('refuses a body it cannot read as a 400 naming the field', () => {
    const bad = [
      [Buffer.from('no parts at all'), type],
      [part('Content-Disposition: form-data; name="file"', 'x'), type], // no closing delimiter
      [Buffer.concat([Buffer.from('--XyZ\r\n'), Buffer.alloc(10_000, 65), Buffer.from('\r\n\r\nx\r\n'), end]), type], // huge headers
      [Buffer.concat([part('Content-Disposition: form-data; name="file"', 'x'), end]), 'multipart/form-data'], // no boundary
    ] as const;
    for (const [body, ct] of bad) {
      let err: unknown;
      try {
        parseMultipart(body, ct);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ApiError);
      expect((err as ApiError).status).toBe(400);
      expect((err as ApiError).message).toMatch(/^file: /);
    }
  });
});

describe('FileStore on a full disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-files-full-'));
  let mounted = false;
  afterAll(() => {
    if (mounted) execFileSync('umount', ['-l', dir]);
  });

  it.runIf(process.getuid?.() === 0)('answers 507 and keeps nothing of a file the disk cannot hold', async () => {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]);
    mounted = true;
    const files = new FileStore(new DirStore(dir));
    const small = await files.create({ filename: 'small.txt', mime_type: 'text/plain', data: Buffer.from('fits') });
    let err: unknown;
    try {
      await files.create({ filename: 'big.bin', mime_type: 'application/octet-stream', data: Buffer.alloc(1024 * 1024, 7) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FileStoreError);
    expect((err as FileStoreError).status).toBe(507);
    expect((err as FileStoreError).message).toMatch(/^the file could not be stored, and nothing of it was kept: /);
    expect((await files.list()).map((f) => f.id)).toEqual([small.id]);
    // No object of it is left in the store: no bytes, no metadata, no temporary file.
    const keys: string[] = [];
    for await (const o of new DirStore(dir).list('files/')) keys.push(o.key);
    expect(keys.sort()).toEqual([`files/${small.id}/content`, `files/${small.id}/meta.json`]);
    const leftovers = readdirSync(join(dir, 'files'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(leftovers.map((e) => e.name).sort()).toEqual(['content', 'meta.json']);
  });
});
