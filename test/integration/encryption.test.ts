/**
 * Encrypted history: with TANDEM_PAYLOAD_KEY, the raw history (a client without the codec, and the dev server's
 * SQLite file) holds no plaintext tool output or failure message, while the client library and the codec server
 * decode it.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TandemClient } from '../../src/client/index.js';
import { startApiServer } from '../../src/server/index.js';
import { Vault } from '../../src/vault/index.js';
import { readHistory } from '../../src/log/read.js';
import { freePort, startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { AesGcmCodec, parsePayloadKeys, tandemDataConverter } from '../../src/codec/index.js';
import { reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { historyText, startWorker, testAgent, testClient, uniqueQueue, waitFor } from '../helpers/env.js';
import { repoRoot } from '../helpers/cli.js';

const key = randomBytes(32).toString('base64');
const codec = new AesGcmCodec(parsePayloadKeys(key));
const word = `plainword${randomBytes(8).toString('hex')}`;
const missingSecret = `enc-missing-${randomBytes(4).toString('hex')}`;
const dbFile = join(mkdtempSync(join(tmpdir(), 'tandem-enc-')), 'temporal.db');
const queue = uniqueQueue('enc');
let server: DevServer;
let model: MessagesServer;
let worker: Awaited<ReturnType<typeof startWorker>>;
let tandem: TandemClient;
let raw: Client;
let codecProcess: ChildProcess | undefined;

beforeAll(async () => {
  server = await startDevServer({ cli: inject('temporalCli'), port: await freePort(), dbFile, headless: true });
  model = await startMessagesServer();
  worker = await startWorker(queue, model.url, server.address, { env: { TANDEM_PAYLOAD_KEY: key } });
  const connection = await Connection.connect({ address: server.address });
  tandem = new TandemClient(new Client({ connection, dataConverter: tandemDataConverter(codec) }), queue);
  raw = await testClient(server.address);
}, 120_000);
afterAll(async () => {
  await worker?.shutdown();
  await worker?.done;
  await model?.close();
  codecProcess?.kill();
  await server?.stop();
});


describe('encrypted history', () => {
  it('stores only ciphertext, while the client and the codec server decode it', async () => {
    const reversed = [...word].reverse().join('');
    model.push(reply(toolUse('bash', { command: `echo ${reversed} | rev` }, 'tu_word')), reply('Done.'));
    const id = await tandem.start({ agent: testAgent(), message: 'print the word' });
    const idle = (s: string) =>
      waitFor(() => tandem.getSession(s), (st) => st.status === 'idle' && st.turn >= 2, 120_000, `${s} idle`);
    await idle(id);
    // The second model call read the tool's output on from the first call's read, decoded by the worker's codec.
    expect(JSON.stringify(model.requests.at(-1)!.body.messages)).toContain(word);
    // The tool call of a second session fails in provisioning: its failure message names the missing secret.
    model.push(reply(toolUse('bash', { command: 'true' }, 'tu_fail')), reply('Failed.'));
    const failing = await tandem.start({
      agent: testAgent(),
      message: 'fail',
      resources: [{ type: 'git_repository', url: 'http://127.0.0.1:9/r.git', credential: missingSecret }],
    });
    await idle(failing);

    // Decoded through the codec: the session's input (what `tandem show` reads), the tool output and the failure.
    expect((await tandem.describeSession(id)).model).toBe(testAgent().model);
    const events = await tandem.getEvents(id);
    const result = events.find((e) => e.type === 'agent.tool_result');
    expect(JSON.stringify(result?.content)).toContain(word);
    const failed = await tandem.getEvents(failing);
    const failedResult = failed.find((e) => e.type === 'agent.tool_result') as { content?: Array<{ text: string }> } | undefined;
    expect(failedResult?.content?.[0]?.text).toContain(`the vault has no secret "${missingSecret}"`);
    const history = await readHistory(tandem.temporal, failing);
    const failure = history.find((e) => e.activityTaskFailedEventAttributes)?.activityTaskFailedEventAttributes?.failure;
    expect(failure?.message).toContain(missingSecret);

    // Read without the codec: ciphertext only, and the failure's message is not in the clear either.
    for (const s of [id, failing]) {
      const text = historyText(await readHistory(raw, s));
      expect(text).toContain('binary/encrypted');
      expect(text).not.toContain(word);
      expect(text).not.toContain(missingSecret);
      expect(text).not.toContain('print the word');
    }
    const rawFailure = (await readHistory(raw, failing)).find((e) => e.activityTaskFailedEventAttributes)
      ?.activityTaskFailedEventAttributes?.failure;
    expect(rawFailure?.message).toBe('Encoded failure');

    // The dev server's database file holds no plaintext either (but does hold the sessions).
    const files = [dbFile, `${dbFile}-wal`].filter(existsSync).map((f) => readFileSync(f));
    const db = Buffer.concat(files);
    expect(db.includes(Buffer.from(queue))).toBe(true);
    expect(db.includes(Buffer.from('binary/encrypted'))).toBe(true);
    expect(db.includes(Buffer.from(word))).toBe(false);
    expect(db.includes(Buffer.from(missingSecret))).toBe(false);

    // `tandem codec-server` (a process) decodes what the UI shows, for the UI's origin and nobody else's.
    const port = await freePort();
    const codecToken = randomBytes(24).toString('hex');
    const codecServer = spawn(process.execPath, [join(repoRoot, 'bin', 'tandem'), 'codec-server', '--port', String(port), '--origin', 'http://localhost:8233'], {
      env: { ...process.env, TANDEM_PAYLOAD_KEY: key, TANDEM_CODEC_TOKEN: codecToken },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    codecProcess = codecServer;
    await new Promise<void>((resolve) => codecServer.stdout!.once('data', () => resolve()));
    const completed = (await readHistory(raw, id)).filter((e) => e.activityTaskCompletedEventAttributes);
    const payloads = completed.flatMap((e) => e.activityTaskCompletedEventAttributes!.result!.payloads!);
    const body = JSON.stringify({
      payloads: payloads.map((p) => ({
        metadata: Object.fromEntries(Object.entries(p.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
        data: Buffer.from(p.data!).toString('base64'),
      })),
    });
    // The UI's codec endpoint carries the server's token as its first path segment.
    const decode = (origin: string) =>
      fetch(`http://127.0.0.1:${port}/${codecToken}/decode`, { method: 'POST', headers: { 'content-type': 'application/json', origin }, body });
    const res = await decode('http://localhost:8233');
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:8233');
    const decoded = (await res.json()) as { payloads: Array<{ data: string }> };
    expect(decoded.payloads.map((p) => Buffer.from(p.data, 'base64').toString()).join('\n')).toContain(word);
    const preflight = await fetch(`http://127.0.0.1:${port}/${codecToken}/decode`, { method: 'OPTIONS', headers: { origin: 'http://localhost:8233' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toContain('x-namespace');
    // The temporal CLI sends the token as its Authorization header (--codec-auth); without it, nothing is decoded.
    const cliShow = (...auth: string[]) =>
      new Promise<string>((resolve) =>
        execFile(
          inject('temporalCli'),
          ['workflow', 'show', '--workflow-id', id, '--address', server.address, '--output', 'json', '--codec-endpoint', `http://127.0.0.1:${port}`, ...auth],
          (_err, stdout, stderr) => resolve(stdout + stderr),
        ),
      );
    const payloadText = (out: string) => [...out.matchAll(/"data": "([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString()).join('\n');
    expect(payloadText(await cliShow('--codec-auth', `Bearer ${codecToken}`))).toContain(word);
    expect(payloadText(await cliShow())).not.toContain(word);
    // Any other web page the user has open gets nothing.
    const foreign = await decode('http://evil.example');
    expect(foreign.status).toBe(403);
    expect(await foreign.text()).not.toContain(word);

    // The API server lists the session, with the title an update put into its (encrypted) memo.
    const api = await startApiServer({ tandem, keys: ['enc-key'], vault: new Vault(join(dirname(dbFile), 'vault.json'), {}), port: 0 });
    try {
      const headers = { 'x-api-key': 'enc-key', 'content-type': 'application/json' };
      const updated = await fetch(`${api.url}/v1/sessions/${id}`, { method: 'POST', headers, body: JSON.stringify({ title: 'secret title' }) });
      expect(updated.status).toBe(200);
      const listed = await waitFor(
        () => fetch(`${api.url}/v1/sessions?limit=50`, { headers }).then((r) => r.json() as Promise<{ data: Array<{ id: string; title: string }> }>),
        (r) => r.data.some((x) => x.id === id && x.title === 'secret title'),
        30_000,
        'the updated session in the API list',
      );
      expect(listed.data.find((x) => x.id === id)?.title).toBe('secret title');
    } finally {
      await api.close();
    }

    for (const s of [id, failing]) await tandem.temporal.workflow.getHandle(s).cancel();
  });
});
