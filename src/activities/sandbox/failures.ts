/**
 * How the hands fail. Every failure a hands activity ends with is made here: the sandbox is lost (the next attempt
 * gets a fresh container), could not be made, or a resource could not be set up, each with a `Failure` type the
 * session acts on. What the Docker engine throws (dockerode's HTTP errors, or no answer at all) is translated in
 * one place, `fromDocker`, at the boundary of the hands activities; the session never matches on Docker's words.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Failure } from '../../shared/failures.js';

/** The HTTP status the Docker engine answered an error with; undefined when the error is not an engine's answer. */
export function dockerStatus(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The sandbox is gone or broken (stopped, removed, mute); retryable, and the next attempt gets a fresh one. */
export function sandboxLost(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: Failure.SandboxLost, message, nonRetryable: false });
}

/**
 * The sandbox could not be made. Retryable, unless `permanent`: a setting, an image or a host that another attempt
 * cannot change (the message then says what to do).
 */
export function provisionFailed(message: string, permanent = false): ApplicationFailure {
  return ApplicationFailure.create({ type: Failure.SandboxProvisionFailed, message, nonRetryable: permanent });
}

/** A resource of the sandbox (a repository) could not be set up; retryable unless `permanent`. */
export function resourceFailed(message: string, permanent = false): ApplicationFailure {
  return ApplicationFailure.create({ type: Failure.SandboxResourceFailed, message, nonRetryable: permanent });
}

/** This hands host cannot do what was asked of it at all (a task that reached the wrong host, a missing store). */
export function handsRefused(type: (typeof Failure)['HandsWrongHost' | 'HandsUnavailable' | 'SnapshotUnavailable'], message: string) {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}

/** Socket errors of an engine that does not answer (stopped, restarting, its socket gone). */
const NO_ANSWER = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ESOCKETTIMEDOUT']);

/** What the engine said about an error, one bounded line (its JSON `message`, else the error's own). */
function engineWords(err: unknown): string {
  const json = (err as { json?: unknown }).json;
  const said = typeof json === 'object' && json !== null ? (json as { message?: unknown }).message : undefined;
  const text = typeof said === 'string' ? said : ((err as Error).message ?? String(err));
  return text.replace(/\s+/g, ' ').trim().slice(0, 500);
}

/**
 * What the Docker engine threw while `doing` (a phrase: "creating sandbox tandem-x"), as the failure the session
 * acts on:
 * - no answer (its socket refuses or is gone): `Sandbox.ProvisionFailed`, retryable (the engine may be restarting);
 * - 404 for an image: `Sandbox.ProvisionFailed`, not retryable until the image is built;
 * - any other answer (404 of a container removed meanwhile, 409, 5xx, and 400 too: a bind source that a replaced
 *   container's clean-up took away a moment ago is a 400 the next attempt does not get): retryable.
 * Failures already made here, cancellations and errors that are not the engine's pass through unchanged.
 */
export function fromDocker(err: unknown, doing: string): unknown {
  if (err instanceof ApplicationFailure || err instanceof CancelledFailure || typeof err !== 'object' || err === null) return err;
  const status = dockerStatus(err);
  if (status === undefined) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === undefined || !NO_ANSWER.has(code)) return err;
    return provisionFailed(`the Docker engine did not answer while ${doing} (${code}); it may be restarting`);
  }
  const words = engineWords(err);
  if (status === 404 && /\bimage\b/i.test(words))
    return provisionFailed(`the Docker engine has no image for ${doing}: ${words}; build the sandbox image (scripts/setup)`, true);
  return provisionFailed(`the Docker engine failed ${doing} (HTTP ${status}): ${words}`);
}

/** `fn`, with what the engine throws translated by `fromDocker`: the boundary of a hands activity. */
export function dockerBoundary<I, O>(doing: string, fn: (input: I) => Promise<O>): (input: I) => Promise<O> {
  return async (input) => {
    try {
      return await fn(input);
    } catch (err) {
      throw fromDocker(err, doing);
    }
  };
}
