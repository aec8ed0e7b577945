/** The package as others use it: its entry points resolve, and what src imports is declared as a dependency. */
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : /\.(ts|cjs)$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

/** The packages a source file imports (statically or dynamically), by package name. */
function importedPackages(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
  return specs
    .filter((s) => !s.startsWith('.') && !s.startsWith('node:') && !builtinModules.includes(s.split('/')[0]!))
    .map((s) => (s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!));
}

describe('package', () => {
  it('exports the client library and the worker by package name', async () => {
    const client = await import('tandem');
    const alsoClient = await import('tandem/client');
    const worker = await import('tandem/worker');
    expect(typeof client.TandemClient).toBe('function');
    expect(alsoClient.TandemClient).toBe(client.TandemClient);
    expect(typeof worker.createWorker).toBe('function');
  });

  it('declares every package src imports as a dependency, and none it does not use', () => {
    const used = new Set(sources(join(root, 'src')).flatMap(importedPackages));
    used.add('tsx'); // bin/tandem runs the sources through it
    const undeclared = [...used].filter((p) => p !== 'tandem' && !(p in pkg.dependencies));
    expect(undeclared).toEqual([]);
    const unused = Object.keys(pkg.dependencies).filter((p) => !used.has(p));
    expect(unused).toEqual([]);
  });
});
