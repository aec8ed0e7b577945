/**
 * The Files API through the official SDK: upload, list, metadata, download and delete, with the hosted API's shapes,
 * its limits and its errors. The bytes are in the server's file store (a directory here), nowhere else.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { TEST_MAX_FILE_BYTES, useApiHarness } from '../helpers/api.js';
import { runTandemHere } from '../helpers/cli.js';

const h = useApiHarness('api-files');
const client = () => new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
const message = (err: unknown) => ((err as InstanceType<typeof Anthropic.APIError>).error as { error: { message: string } }).error.message;

describe('files through the official SDK', () => {
  it('uploads, lists, describes, downloads and deletes a file', async () => {
    const csv = 'city,population\nLyon,522250\nNantes,320732\n';
    const meta = await client().beta.files.upload({ file: await toFile(Buffer.from(csv), 'cities.csv', { type: 'text/csv' }) });
    expect(meta).toMatchObject({ type: 'file', filename: 'cities.csv', mime_type: 'text/csv', size_bytes: csv.length, downloadable: true });
    expect(meta.id).toMatch(/^file_[0-9a-f]{24}$/);

    expect(await client().beta.files.retrieveMetadata(meta.id)).toEqual(meta);
    const listed = [];
    for await (const f of client().beta.files.list({ limit: 2 })) listed.push(f.id);
    expect(listed).toContain(meta.id);
    expect((await client().beta.files.list({ ids: [meta.id, 'file_000000000000000000000000'] })).data).toEqual([meta]);

    const download = await client().beta.files.download(meta.id);
    expect(download.headers.get('content-type')).toBe('text/csv');
    expect(await download.text()).toBe(csv);
    // The bytes are in the file store, as uploaded.
    expect(readFileSync(join(h.filesDir, 'files', meta.id, 'content'), 'utf8')).toBe(csv);

    expect(await client().beta.files.delete(meta.id)).toEqual({ id: meta.id, type: 'file_deleted' });
    for (const call of [() => client().beta.files.retrieveMetadata(meta.id), () => client().beta.files.download(meta.id), () => client().beta.files.delete(meta.id)]) {
      const err = await call().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.NotFoundError);
      expect(message(err)).toBe(`file "${meta.id}" was not found`);
    }
    expect(readdirSync(join(h.filesDir, 'files')).includes(meta.id) ? readdirSync(join(h.filesDir, 'files', meta.id)) : []).toEqual([]);
  });

  it('keeps only the last component of a filename and names a file with none', async () => {
    const traversal = await client().beta.files.upload({ file: await toFile(Buffer.from('x'), '../../etc/passwd') });
    expect(traversal.filename).toBe('passwd');
    const windows = await client().beta.files.upload({ file: await toFile(Buffer.from('y'), 'C:\\Users\\a\\notes.txt') });
    expect(windows.filename).toBe('notes.txt');
    // Every byte value, in a part the SDK sends without a filename: still a file, byte for byte.
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const unnamed = await client().beta.files.upload({ file: await toFile(bytes, '') });
    expect(unnamed.filename).toBe('unnamed');
    expect(unnamed.mime_type).toBe('application/octet-stream');
    expect(Buffer.from(await (await client().beta.files.download(unnamed.id)).arrayBuffer())).toEqual(bytes);
  });

  it('refuses what it cannot keep, naming the field or the size, and keeps nothing of it', async () => {
    const before = readdirSync(join(h.filesDir, 'files')).length;
    const big = await client()
      .beta.files.upload({ file: await toFile(Buffer.alloc(TEST_MAX_FILE_BYTES + 1, 1), 'big.bin') })
      .catch((e: unknown) => e);
    expect((big as InstanceType<typeof Anthropic.APIError>).status).toBe(413);
    expect(message(big)).toMatch(/^the (request body|file) is \d+ bytes; at most \d+ fit$/);
    const expiry = await client()
      .beta.files.upload({ file: await toFile(Buffer.from('e'), 'e.txt'), expires_in_seconds: 60 })
      .catch((e: unknown) => e);
    expect(expiry).toBeInstanceOf(Anthropic.BadRequestError);
    expect(message(expiry)).toBe('expires_in_seconds: must be a whole number from 3600 to 7776000');
    const noFile = await fetch(`${h.url}/v1/files`, {
      method: 'POST',
      headers: { 'x-api-key': h.apiKey, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(noFile.status).toBe(400);
    // A body that announces no length is cut off as soon as it passes the cap.
    const head = '--b\r\nContent-Disposition: form-data; name="file"; filename="chunked.bin"\r\n\r\n';
    const chunks = [Buffer.from(head), Buffer.alloc(TEST_MAX_FILE_BYTES, 2), Buffer.alloc(128 * 1024, 2), Buffer.from('\r\n--b--\r\n')];
    const chunked = await fetch(`${h.url}/v1/files`, {
      method: 'POST',
      headers: { 'x-api-key': h.apiKey, 'content-type': 'multipart/form-data; boundary=b' },
      body: new ReadableStream({
        pull(controller) {
          const next = chunks.shift();
          if (next) controller.enqueue(next);
          else controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as { error: { message: string } }).error.message).toBe(`the request body is over ${TEST_MAX_FILE_BYTES + 64 * 1024} bytes`);
    expect(readdirSync(join(h.filesDir, 'files')).length).toBe(before);
  });

  it('tandem files reads and writes the same store: get writes the bytes the API took, put is listed by the API', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    const meta = await client().beta.files.upload({ file: await toFile(bytes, 'report.bin') });
    const env = { TANDEM_SNAPSHOT_STORE: h.filesDir };
    const out = join(mkdtempSync(join(tmpdir(), 'tandem-files-get-')), 'report.bin');
    const get = await runTandemHere(['files', 'get', meta.id, '-o', out], env);
    expect(get.code, get.stderr).toBe(0);
    expect(readFileSync(out)).toEqual(bytes);
    const ls = await runTandemHere(['files', 'ls', '--json'], env);
    expect((JSON.parse(ls.stdout) as Array<{ id: string }>).map((f) => f.id)).toContain(meta.id);

    const local = join(mkdtempSync(join(tmpdir(), 'tandem-files-put-')), 'notes.md');
    writeFileSync(local, '# Notes\n');
    const put = await runTandemHere(['files', 'put', local, '--mime-type', 'text/markdown', '--json'], env);
    expect(put.code, put.stderr).toBe(0);
    const stored = JSON.parse(put.stdout) as { id: string };
    expect(await client().beta.files.retrieveMetadata(stored.id)).toMatchObject({ filename: 'notes.md', mime_type: 'text/markdown', size_bytes: 8 });
    expect(await (await client().beta.files.download(stored.id)).text()).toBe('# Notes\n');

    expect((await runTandemHere(['files', 'rm', stored.id], env)).code).toBe(0);
    const gone = await runTandemHere(['files', 'get', stored.id, '-o', out], env);
    expect([gone.code, gone.stderr.trim()]).toEqual([1, `tandem: file "${stored.id}" was not found`]);
  });

  it('gives an expiring file its expiry', async () => {
    const meta = await client().beta.files.upload({ file: await toFile(Buffer.from('soon'), 'soon.txt'), expires_in_seconds: 3600 });
    expect(Date.parse(meta.expires_at!) - Date.parse(meta.created_at)).toBe(3600 * 1000);
  });
});
