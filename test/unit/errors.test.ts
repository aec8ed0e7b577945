/** Tandem's own errors: one base class, named by their class, and translated by class at the API boundary. */
import { describe, expect, it } from 'vitest';
import { SessionNotFoundError } from '../../src/client/index.js';
import { AgentFileError } from '../../src/config/agent.js';
import { ObjectTooLargeError } from '../../src/activities/sandbox/blob-store.js';
import { toApiError } from '../../src/server/http.js';
import { TandemError } from '../../src/shared/errors.js';
import { VaultError } from '../../src/vault/index.js';

describe('errors', () => {
  it('share a base class and carry their own class name', () => {
    const errors = [new VaultError('v'), new SessionNotFoundError('s'), new AgentFileError('a.yaml', [{ path: 'name', message: 'required' }]), new ObjectTooLargeError('k', 10, 5, 'store', true)];
    for (const e of errors) expect(e).toBeInstanceOf(TandemError);
    expect(errors.map((e) => e.name)).toEqual(['VaultError', 'SessionNotFoundError', 'AgentFileError', 'ObjectTooLargeError']);
  });

  it('become API errors by class: the client is told what it got wrong, a bug is a 500', () => {
    expect(toApiError(new VaultError('no secret "x"'))).toMatchObject({ status: 400, message: 'no secret "x"' });
    expect(toApiError(new AgentFileError('a.yaml', [{ path: 'name', message: 'required' }]))).toMatchObject({ status: 400 });
    expect(toApiError(new SessionNotFoundError('no session "sesn_x"'))).toMatchObject({ status: 404, message: 'no session "sesn_x"' });
    expect(toApiError(new Error('boom'))).toMatchObject({ status: 500, message: 'internal error: boom' });
  });
});
