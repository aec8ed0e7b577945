/**
 * docker-compose.yml and the worker's Dockerfile. No image registry is reachable here, so the cluster is not
 * brought up; `docker compose config` (or Debian's `docker-compose config`) checks and resolves the file the way
 * `up` would read it, and the Dockerfile is checked against the repository it builds from.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cli.js';
import { TANDEM_SEARCH_ATTRIBUTES } from '../../src/cli/dev-server.js';

/** `docker compose` when the plugin is there, else `docker-compose` (scripts/setup installs Debian's). */
function composeCommand(): string[] | undefined {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    try {
      execFileSync(cmd[0]!, [...cmd.slice(1), 'version'], { stdio: 'ignore' });
      return cmd;
    } catch {
      // not this one
    }
  }
  return undefined;
}

interface Service {
  command?: unknown;
  image?: string;
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string>;
  volumes?: Array<string | { source: string; target: string }>;
  deploy?: { replicas?: number | string };
  depends_on?: Record<string, { condition: string }>;
  ports?: unknown[];
}

function config(env: Record<string, string> = {}): { services: Record<string, Service> } {
  const cmd = composeCommand();
  if (!cmd) throw new Error('neither "docker compose" nor "docker-compose" is installed: run scripts/setup');
  const out = execFileSync(cmd[0]!, [...cmd.slice(1), '-f', join(repoRoot, 'docker-compose.yml'), 'config'], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return parse(out);
}

describe('docker-compose.yml', () => {
  it('declares Temporal on PostgreSQL, its UI, the search-attribute setup and N workers', () => {
    const { services } = config({ TANDEM_WORKERS: '3', ANTHROPIC_API_KEY: 'k' });
    expect(Object.keys(services).sort()).toEqual(['postgresql', 'temporal', 'temporal-setup', 'temporal-ui', 'worker']);
    expect(services.temporal!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql' });
    expect(services.temporal!.depends_on?.postgresql?.condition).toBe('service_healthy');
    expect(services['temporal-ui']!.environment?.TEMPORAL_ADDRESS).toBe('temporal:7233');
    const setup = JSON.stringify(services['temporal-setup']);
    for (const sa of TANDEM_SEARCH_ATTRIBUTES) expect(setup, `temporal-setup registers ${sa}`).toContain(sa);

    const worker = services.worker!;
    expect(worker.build?.context).toBe(repoRoot);
    expect(worker.build?.dockerfile).toBe('Dockerfile');
    expect(Number(worker.deploy?.replicas)).toBe(3);
    expect(worker.depends_on?.['temporal-setup']?.condition).toBe('service_completed_successfully');
    expect(worker.environment).toMatchObject({
      TEMPORAL_ADDRESS: 'temporal:7233',
      TANDEM_TASK_QUEUE: 'tandem',
      ANTHROPIC_API_KEY: 'k',
      TANDEM_METRICS_ADDRESS: '0.0.0.0:9464',
    });
    const mounts = (worker.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':').slice(0, 2).join(':') : `${v.source}:${v.target}`));
    expect(mounts).toContain('/var/run/docker.sock:/var/run/docker.sock');
    // Workers publish no host port, so any number of replicas fits on one host.
    expect(worker.ports).toBeUndefined();
  });

  it('defaults to two workers', () => {
    expect(Number(config().services.worker!.deploy?.replicas)).toBe(2);
  });

  it('the worker Dockerfile builds from files this repository has and runs `tandem worker`', () => {
    const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
    const ignored = readFileSync(join(repoRoot, '.dockerignore'), 'utf8').split('\n').filter(Boolean);
    const copies = [...dockerfile.matchAll(/^COPY\s+(.+)\s+\S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    expect(copies.length).toBeGreaterThan(3);
    for (const src of copies) {
      expect(existsSync(join(repoRoot, src)), `${src} exists`).toBe(true);
      expect(ignored, `${src} is not in .dockerignore`).not.toContain(src);
    }
    expect(dockerfile).toMatch(/^FROM node:20-/m);
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "bin\/tandem"\]$/m);
    expect(dockerfile).toMatch(/^CMD \["worker"\]$/m);
    // What runs the worker without dev dependencies: tsx and the Temporal packages are runtime dependencies.
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const dep of ['tsx', '@temporalio/worker', '@temporalio/envconfig', 'dockerode', '@anthropic-ai/sdk'])
      expect(Object.keys(pkg.dependencies)).toContain(dep);
  });
});
