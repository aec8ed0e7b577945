import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { temporalSettings } from '../../src/config/temporal.js';
import { loadRuntimeConfig } from '../../src/config/env.js';

const noFile = { TEMPORAL_CONFIG_FILE: '/nonexistent/temporal.toml' };

describe('Temporal connection settings (the SDK env config)', () => {
  it('defaults to the local dev server and the default namespace', () => {
    const s = temporalSettings({}, { ...noFile });
    expect(s.address).toBe('127.0.0.1:7233');
    expect(s.namespace).toBe('default');
    expect(s.connection.tls).toBeFalsy();
  });

  it('reads a Temporal Cloud style API key and TLS from TEMPORAL_* variables', () => {
    const s = temporalSettings(
      {},
      {
        ...noFile,
        TEMPORAL_ADDRESS: 'my-ns.a1b2c.tmprl.cloud:7233',
        TEMPORAL_NAMESPACE: 'my-ns.a1b2c',
        TEMPORAL_API_KEY: 'secret-key',
        TEMPORAL_TLS: 'true',
        TEMPORAL_TLS_SERVER_NAME: 'my-ns.a1b2c.tmprl.cloud',
        TEMPORAL_GRPC_META_X_TEAM: 'agents',
      },
    );
    expect(s.address).toBe('my-ns.a1b2c.tmprl.cloud:7233');
    expect(s.namespace).toBe('my-ns.a1b2c');
    expect(s.connection.apiKey).toBe('secret-key');
    expect(s.connection.tls).toMatchObject({ serverNameOverride: 'my-ns.a1b2c.tmprl.cloud' });
    expect(s.connection.metadata).toMatchObject({ 'x-team': 'agents' });
  });

  it('reads a profile from the temporal.toml file; explicit settings and env variables win', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-envconfig-'));
    const file = join(dir, 'temporal.toml');
    writeFileSync(file, '[profile.default]\naddress = "cluster.internal:7233"\nnamespace = "agents"\n');
    const fromFile = temporalSettings({}, { TEMPORAL_CONFIG_FILE: file });
    expect([fromFile.address, fromFile.namespace]).toEqual(['cluster.internal:7233', 'agents']);
    expect(temporalSettings({}, { TEMPORAL_CONFIG_FILE: file, TEMPORAL_NAMESPACE: 'other' }).namespace).toBe('other');
    expect(temporalSettings({ address: '10.0.0.1:7233' }, { TEMPORAL_CONFIG_FILE: file }).address).toBe('10.0.0.1:7233');
    // The worker's validated config resolves the same way.
    const config = loadRuntimeConfig({ TEMPORAL_CONFIG_FILE: file });
    expect([config.TEMPORAL_ADDRESS, config.TEMPORAL_NAMESPACE]).toEqual(['cluster.internal:7233', 'agents']);
  });
});
