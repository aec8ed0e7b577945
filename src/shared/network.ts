/**
 * What a sandbox's network policy lets through, as host names: the hosts an agent names, the package registries
 * (`allow_package_managers`) and the hosts of its MCP servers (`allow_mcp_servers`), folded into one allow-list when
 * the agent is read (an agent file, or an API environment with its agent). The egress proxy then checks one list.
 */
import type { McpServerConfig, SandboxNetwork } from './types.js';

/**
 * The registries of the package managers an environment's `packages` names (apt, pip, npm, cargo, gem, go), as the
 * hosts their default configurations reach.
 */
export const PACKAGE_REGISTRY_HOSTS: Readonly<Record<string, readonly string[]>> = {
  apt: ['deb.debian.org', 'security.debian.org', 'archive.ubuntu.com', 'security.ubuntu.com', 'ports.ubuntu.com'],
  pip: ['pypi.org', 'files.pythonhosted.org'],
  npm: ['registry.npmjs.org', 'registry.yarnpkg.com'],
  cargo: ['crates.io', 'index.crates.io', 'static.crates.io'],
  gem: ['rubygems.org', 'index.rubygems.org'],
  go: ['proxy.golang.org', 'sum.golang.org'],
};

/** The host names of the URL servers among `servers` (stdio servers run on the worker, not behind the proxy). */
function mcpHosts(servers: readonly McpServerConfig[]): string[] {
  const hosts: string[] = [];
  for (const s of servers) {
    if (s.type !== 'url') continue;
    try {
      hosts.push(new URL(s.url).hostname.replace(/^\[|\]$/g, ''));
    } catch {
      // The agent's validation refuses a server URL that does not parse; nothing to allow for one.
    }
  }
  return hosts;
}

/**
 * A network policy with its flags folded into `allowed_hosts` (each host once, in order: given, registries, MCP
 * servers). `limited` with no host at all is `none`: nothing would get through.
 */
export function foldNetwork(network: SandboxNetwork, mcpServers: readonly McpServerConfig[] = []): SandboxNetwork {
  if (network.policy !== 'limited') return { policy: network.policy };
  const hosts = [
    ...(network.allowed_hosts ?? []),
    ...(network.allow_package_managers ? Object.values(PACKAGE_REGISTRY_HOSTS).flat() : []),
    ...(network.allow_mcp_servers ? mcpHosts(mcpServers) : []),
  ];
  const allowed = [...new Set(hosts)];
  return allowed.length > 0 ? { policy: 'limited', allowed_hosts: allowed } : { policy: 'none' };
}
