/**
 * A real S3-compatible server for tests: MinIO (built by `scripts/setup --tests` into .tandem/bin) on loopback, on a
 * data directory of its own, with generated root credentials and one empty bucket.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Store } from '../../src/activities/sandbox/blob-store.js';
import { freePort } from '../../src/cli/dev-server.js';

/** The MinIO binary `scripts/setup --tests` builds. */
export const MINIO_BIN = join(import.meta.dirname, '../../.tandem/bin/minio');

/** A running MinIO server: its S3 endpoint, root credentials and a bucket made for the caller. */
export interface Minio {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  bucket: string;
  /** Stops the server (SIGTERM, SIGKILL when it has not exited within 10 s) and removes its data. */
  stop(): Promise<void>;
}

/**
 * Starts MinIO on free loopback ports and waits until it answers on its liveness endpoint and a bucket is made
 * (conditions, not sleeps). Throws with the server's output when it exits before that, and with what to run when
 * the binary is missing.
 */
export async function startMinio(): Promise<Minio> {
  if (!existsSync(MINIO_BIN)) {
    throw new Error(`no MinIO server at ${MINIO_BIN}: run \`bash scripts/setup --tests\` to build it`);
  }
  const data = mkdtempSync(join(tmpdir(), 'tandem-minio-'));
  const accessKey = `tandem${randomBytes(6).toString('hex')}`;
  const secretKey = randomBytes(24).toString('hex');
  const port = await freePort();
  const consolePort = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn(
    MINIO_BIN,
    ['server', data, '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'],
    {
      env: {
        PATH: process.env.PATH,
        HOME: data,
        MINIO_ROOT_USER: accessKey,
        MINIO_ROOT_PASSWORD: secretKey,
        MINIO_BROWSER: 'off',
        MINIO_UPDATE: 'off',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));

  const stop = async (): Promise<void> => {
    if (!gone) {
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 10_000)));
      if ((await Promise.race([exited, late])) === 'late') {
        child.kill('SIGKILL');
        await exited;
      }
      clearTimeout(timer);
    }
    rmSync(data, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 60_000;
    while (!(await live(`${endpoint}/minio/health/live`))) {
      if (gone) throw new Error(`MinIO exited before it was ready:\n${output}`);
      if (Date.now() > deadline) throw new Error(`MinIO did not answer on ${endpoint} within 60 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const bucket = `tandem-test-${randomBytes(4).toString('hex')}`;
    const client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: accessKey, secretAccessKey: secretKey },
    });
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      client.destroy();
    }
    return { endpoint, accessKey, secretKey, bucket, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Whether a GET of `url` answers 200 (false while nothing listens or the server is not ready). */
function live(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

/** An S3 store on a running MinIO, under `prefix`. */
export function minioStore(minio: Minio, prefix = 'snapshots'): S3Store {
  return new S3Store({
    endpoint: minio.endpoint,
    region: 'us-east-1',
    bucket: minio.bucket,
    prefix,
    credentials: { accessKeyId: minio.accessKey, secretAccessKey: minio.secretKey },
    forcePathStyle: true,
  });
}
