// Lint: the boundaries the code's design rests on, checked by tools rather than by convention.
// - Workflow code (src/workflows and the pure modules it imports: src/shared, src/log/events.ts) stays deterministic: no Node built-ins, no
//   clients, no activity code (its types only).
// - No import cycles in src.
// - No promise left floating in src: each is awaited, returned, or marked `void` on purpose.
// - No function in src/workflows over 150 lines.
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

/** What workflow code must not import: it runs in Temporal's deterministic sandbox and is replayed. */
const workflowRestricted = {
  patterns: [
    { group: ['node:*'], message: 'Workflow code runs in a deterministic sandbox: no Node built-ins.' },
    {
      group: ['**/activities/*', '**/activities/**', '**/log/read*', '**/log/decode*', '**/log/cache*', '**/client/*', '**/server/*', '**/cli/*', '**/vault/*', '**/config/env*'],
      allowTypeImports: true,
      message: 'Workflow code may import the types of these modules only (import type).',
    },
  ],
  paths: [
    ...['fs', 'path', 'os', 'crypto', 'child_process', 'net', 'http', 'https', 'events', 'stream', 'util', 'timers'].map((name) => ({
      name,
      message: 'Workflow code runs in a deterministic sandbox: no Node built-ins.',
    })),
    ...['@temporalio/activity', '@temporalio/client', '@temporalio/worker', 'dockerode', '@anthropic-ai/sdk', '@aws-sdk/client-s3'].map(
      (name) => ({ name, allowTypeImports: true, message: 'Workflow code may import the types of this package only.' }),
    ),
  ],
};

export default tseslint.config(
  { ignores: ['node_modules/**', '.tandem/**', 'bench/results/**', 'sandbox/**', '**/*.cjs'] },
  {
    files: ['src/**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin, 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver()],
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
    },
  },
  {
    files: ['src/workflows/**/*.ts', 'src/shared/**/*.ts', 'src/log/events.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', workflowRestricted] },
  },
  {
    // The session workflow stays in parts a reader can hold in mind.
    files: ['src/workflows/**/*.ts'],
    rules: { 'max-lines-per-function': ['error', { max: 150 }] },
  },
);
