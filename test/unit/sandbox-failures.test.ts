/**
 * The hands' failure translator: what the real Docker engine (through dockerode) throws becomes a failure of a
 * `Failure` type, retryable or not as the session needs it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { dockerBoundary, fromDocker, sandboxLost } from '../../src/activities/sandbox/failures.js';
import { Failure } from '../../src/shared/failures.js';

const caught = (p: Promise<unknown>) => p.then(() => expect.unreachable('the engine accepted it'), (err: unknown) => err);

describe('fromDocker', () => {
  it('a missing image is a provision failure that is not retried and says to build the image', async () => {
    const image = 'tandem-test-no-such-image:never';
    const err = await caught(new Docker().createContainer({ Image: image, name: `tandem-failures-${process.pid}` }));
    const f = fromDocker(err, `creating sandbox x from image ${image}`) as ApplicationFailure;
    expect(f).toBeInstanceOf(ApplicationFailure);
    expect(f.type).toBe(Failure.SandboxProvisionFailed);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain(`creating sandbox x from image ${image}`);
    expect(f.message).toContain('build the sandbox image');
  });

  it('a container removed meanwhile (404) or a conflict (409) is retried', async () => {
    const err = await caught(new Docker().getContainer('tandem-failures-no-such-container').inspect());
    const f = fromDocker(err, 'stopping a sandbox') as ApplicationFailure;
    expect([f.type, f.nonRetryable]).toEqual([Failure.SandboxProvisionFailed, false]);
    expect(f.message).toMatch(/^the Docker engine failed stopping a sandbox \(HTTP 404\): /);
  });

  it('a spec the engine refuses (400) is retried, and names what the engine said', async () => {
    // The sandbox image exists (the set-up builds it), so what the engine refuses is the memory limit.
    const err = await caught(new Docker().createContainer({ Image: 'tandem-sandbox:latest', HostConfig: { Memory: 1024 } }));
    expect((err as { statusCode?: number }).statusCode).toBe(400);
    const f = fromDocker(err, 'creating sandbox y') as ApplicationFailure;
    expect([f.type, f.nonRetryable]).toEqual([Failure.SandboxProvisionFailed, false]);
    expect(f.message).toMatch(/^the Docker engine failed creating sandbox y \(HTTP 400\): .*memory/i);
  });

  it('an engine that does not answer is a provision failure that is retried', async () => {
    const socketPath = join(mkdtempSync(join(tmpdir(), 'tandem-failures-')), 'docker.sock');
    const err = await caught(new Docker({ socketPath }).ping());
    const f = fromDocker(err, 'provisioning a sandbox') as ApplicationFailure;
    expect([f.type, f.nonRetryable]).toEqual([Failure.SandboxProvisionFailed, false]);
    expect(f.message).toBe('the Docker engine did not answer while provisioning a sandbox (ENOENT); it may be restarting');
  });

  it('failures made already, cancellations and errors that are not the engine pass through unchanged', () => {
    const lost = sandboxLost('gone');
    const cancelled = new CancelledFailure('cancelled');
    const plain = new Error('a snapshot object is damaged');
    for (const err of [lost, cancelled, plain, 'text', null]) expect(fromDocker(err, 'x')).toBe(err);
  });

  it('dockerBoundary translates what an activity throws and passes results through', async () => {
    const ok = dockerBoundary('x', async (n: number) => n + 1);
    expect(await ok(1)).toBe(2);
    const failing = dockerBoundary('removing a sandbox', () => new Docker({ socketPath: '/nonexistent/docker.sock' }).ping());
    await expect(failing(undefined)).rejects.toMatchObject({ type: Failure.SandboxProvisionFailed, nonRetryable: false });
  });
});
