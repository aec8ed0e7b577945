/**
 * Resources of a session (git repositories) and the vault secrets it names. Plain functions over JSON, shared by
 * the workflow (which passes the resources to the hands), the client (which checks the vault before starting) and
 * the worker (which checks it again at provision).
 */
import type { AgentDefinition, RepositoryResource, SessionInput, SessionResource } from './types.js';

/** The session's resources: the agent's first, then the session's own. */
export function sessionResources(input: Pick<SessionInput, 'resources'> & { agent: Pick<AgentDefinition, 'resources'> }): SessionResource[] {
  return [...(input.agent.resources ?? []), ...(input.resources ?? [])];
}

/** The vault secrets a session's repositories name (their `credential`s). */
export function secretNames(input: Pick<SessionInput, 'resources'> & { agent: Pick<AgentDefinition, 'resources'> }): string[] {
  return [...new Set(sessionResources(input).flatMap((r) => (r.credential ? [r.credential] : [])))];
}

/**
 * Whether a repository is a local one: a `file://` URL naming a git repository on the worker host (agent files
 * may name it by a path, which the loader turns into such a URL). The gateway serves it with `git http-backend`.
 */
export function isLocalRepository(url: string): boolean {
  return url.startsWith('file:');
}

/** The repository's name from its URL (`https://host/org/name.git` → `name`). */
export function repositoryName(url: string): string {
  const last = url.replace(/[?#].*$/, '').replace(/\/+$/, '').split('/').pop() ?? '';
  return last.replace(/\.git$/, '') || 'repository';
}

/** Where a repository is cloned in the sandbox: its `mount_path`, else `/workspace/<repo-name>`. */
export function repositoryPath(r: RepositoryResource): string {
  return r.mount_path || `/workspace/${repositoryName(r.url)}`;
}
