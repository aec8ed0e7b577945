/** The model API's errors as typed failures: by status, with the wait and the retry verdict the API gives. */
import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { retryDelayMs, translateModelError } from '../../src/activities/model.js';
import { Failure } from '../../src/shared/failures.js';

function apiError(status: number, type: string, headers: Record<string, string> = {}) {
  return Anthropic.APIError.generate(status, { type: 'error', error: { type, message: `${type} happened` } }, undefined, new Headers(headers));
}

describe('model API errors', () => {
  it('types each status, retryable or not', () => {
    const cases: Array<[number, string, string, boolean]> = [
      [429, 'rate_limit_error', Failure.ModelRateLimit, false],
      [529, 'overloaded_error', Failure.ModelOverloaded, false],
      [500, 'api_error', Failure.ModelServerError, false],
      [401, 'authentication_error', Failure.ModelAuthentication, true],
      [404, 'not_found_error', Failure.ModelNotFound, true],
      [400, 'invalid_request_error', Failure.ModelBadRequest, true],
    ];
    for (const [status, type, failure, nonRetryable] of cases) {
      const f = translateModelError(apiError(status, type));
      expect([f.type, f.nonRetryable], `${status}`).toEqual([failure, nonRetryable]);
      expect(f.message).toBe(`model API ${status} ${type}: ${type} happened`);
    }
  });

  it('takes the wait from retry-after-ms first, then retry-after in seconds or as a date', () => {
    expect(translateModelError(apiError(429, 'rate_limit_error', { 'retry-after-ms': '1500', 'retry-after': '9' })).nextRetryDelay).toBe(1500);
    expect(translateModelError(apiError(429, 'rate_limit_error', { 'retry-after': '7' })).nextRetryDelay).toBe(7000);
    expect(translateModelError(apiError(429, 'rate_limit_error')).nextRetryDelay).toBeUndefined();
    const date = retryDelayMs(new Headers({ 'retry-after': new Date(Date.now() + 30_000).toUTCString() }));
    expect(date).toBeGreaterThan(28_000);
    expect(date).toBeLessThanOrEqual(30_000);
    expect(retryDelayMs(new Headers({ 'retry-after': 'soon' }))).toBeUndefined();
    expect(retryDelayMs(new Headers({ 'retry-after-ms': '99999999' }))).toBe(600_000);
  });

  it('follows x-should-retry over the status', () => {
    expect(translateModelError(apiError(500, 'api_error', { 'x-should-retry': 'false' })).nonRetryable).toBe(true);
    expect(translateModelError(apiError(400, 'invalid_request_error', { 'x-should-retry': 'true' })).nonRetryable).toBe(false);
    expect(translateModelError(apiError(429, 'rate_limit_error', { 'x-should-retry': 'true' })).nonRetryable).toBe(false);
  });
});
