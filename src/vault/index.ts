/**
 * The worker-side vault: named secrets in one file outside the project (mode 0600), with an environment fallback.
 * Agent files, sessions and workflow history name secrets; only worker-side code (activities, proxies) reads values.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { TandemError } from '../shared/errors.js';

/** A secret's name: what agent files, sessions and the CLI use. */
export const SECRET_NAME = /^[A-Za-z][A-Za-z0-9_.\-/]{0,127}$/;

/** What `list` shows of a secret: never its value. */
export interface SecretInfo {
  name: string;
  source: 'file' | 'env';
  created_at?: string;
  updated_at?: string;
}

interface StoredSecret {
  value: string;
  created_at: string;
  updated_at: string;
}

interface VaultFile {
  version: 1;
  secrets: Record<string, StoredSecret>;
}

/** A problem with the vault or a name in it; the message says what to do. */
export class VaultError extends TandemError {}

/** Default vault file: `$TANDEM_VAULT_FILE`, else `$XDG_CONFIG_HOME/tandem/vault.json` or `~/.config/tandem/vault.json`. */
export function defaultVaultPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TANDEM_VAULT_FILE) return env.TANDEM_VAULT_FILE;
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'tandem', 'vault.json');
}

/** The environment variable that supplies a secret when the file does not: `TANDEM_SECRET_<NAME>` (A-Z, 0-9, _). */
export function envVarFor(name: string): string {
  return `TANDEM_SECRET_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export function checkSecretName(name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw new VaultError(
      `"${name}" is not a valid secret name: use a letter, then letters, digits, "_", "-", "." or "/" (at most 128)`,
    );
  }
}

/** The vault of one worker or CLI process. Reads the file on every call, so `tandem vault set` takes effect at once. */
export class Vault {
  constructor(
    readonly path: string = defaultVaultPath(),
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  private read(): VaultFile {
    let text: string;
    try {
      const st = statSync(this.path);
      if ((st.mode & 0o077) !== 0) {
        throw new VaultError(
          `vault file ${this.path} can be read by other users (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${this.path}`,
        );
      }
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, secrets: {} };
      throw err;
    }
    try {
      const parsed = JSON.parse(text) as VaultFile;
      if (parsed?.version !== 1 || typeof parsed.secrets !== 'object') throw new Error('unknown format');
      return parsed;
    } catch (err) {
      throw new VaultError(`vault file ${this.path} is not a Tandem vault (${(err as Error).message})`);
    }
  }

  private write(file: VaultFile): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.path);
  }

  /**
   * Runs a read-modify-write of the file under a lock file, so that processes sharing the vault (CLI, workers,
   * the API server) never lose each other's changes. A lock left by a crashed process is taken after 30 s.
   */
  private locked<T>(fn: () => T): T {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const lock = `${this.path}.lock`;
    const until = Date.now() + 10_000;
    for (;;) {
      try {
        closeSync(openSync(lock, 'wx', 0o600));
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
        if (age > 30_000) unlinkSync(lock);
        else if (Date.now() > until) throw new VaultError(`the vault file ${this.path} stays locked by ${lock}; remove it if no tandem process runs`);
        else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      }
    }
    try {
      return fn();
    } finally {
      unlinkSync(lock);
    }
  }

  /** Stores (or replaces) a secret in the file. */
  set(name: string, value: string): void {
    checkSecretName(name);
    if (value.length === 0) throw new VaultError(`secret "${name}" is empty`);
    this.locked(() => {
      const file = this.read();
      const now = new Date().toISOString();
      const created = Object.hasOwn(file.secrets, name) ? file.secrets[name]!.created_at : now;
      file.secrets[name] = { value, created_at: created, updated_at: now };
      this.write(file);
    });
  }

  /** Removes a secret from the file; false when it was not there. */
  remove(name: string): boolean {
    return this.locked(() => {
      const file = this.read();
      if (!Object.hasOwn(file.secrets, name)) return false;
      delete file.secrets[name];
      this.write(file);
      return true;
    });
  }

  /** The secret's value (file first, then `TANDEM_SECRET_<NAME>`), or undefined. */
  get(name: string): string | undefined {
    const file = this.read();
    return (Object.hasOwn(file.secrets, name) ? file.secrets[name]!.value : undefined) ?? this.env[envVarFor(name)];
  }

  /** Whether a secret of this name exists (file or environment). */
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** The value, or a VaultError that names the secret and how to set it. */
  require(name: string): string {
    const value = this.get(name);
    if (value === undefined) throw new VaultError(unknownSecretsMessage([name]));
    return value;
  }

  /** Names among `names` that the vault does not hold. */
  missing(names: Iterable<string>): string[] {
    const file = this.read();
    return [...new Set(names)].filter((n) => !Object.hasOwn(file.secrets, n) && this.env[envVarFor(n)] === undefined);
  }

  /** Every secret's name and dates, file first, then environment ones. Values are never returned. */
  list(): SecretInfo[] {
    const file = this.read();
    const out: SecretInfo[] = Object.entries(file.secrets)
      .map(([name, s]) => ({ name, source: 'file' as const, created_at: s.created_at, updated_at: s.updated_at }))
      .sort((a, b) => a.name.localeCompare(b.name));
    for (const key of Object.keys(this.env).sort()) {
      if (!key.startsWith('TANDEM_SECRET_')) continue;
      const name = key.slice('TANDEM_SECRET_'.length);
      if (!out.some((s) => envVarFor(s.name) === key)) out.push({ name, source: 'env' });
    }
    return out;
  }
}

/** One sentence for secrets a session refers to that the vault does not hold. */
export function unknownSecretsMessage(names: string[]): string {
  const list = names.map((n) => `"${n}"`).join(', ');
  return `the vault has no secret ${list}; add it with \`tandem vault set ${names[0]}\` or the environment variable ${envVarFor(names[0]!)}`;
}
