/**
 * The sandbox's only ways out, run by the worker on the host: a credential proxy for git and an egress proxy that
 * enforces an allow-list. Both listen on unix sockets in the session's slot (slot.ts): its `sock/` directory is
 * bind-mounted read-only into the session's container (which has no network), and the toolbox relays loopback TCP
 * ports to them (its `forward` request).
 *
 * This file is the gateway's lifecycle: which proxies a session gets, where their sockets and state live, and how a
 * worker starts, takes over and stops them. What each proxy does is in its own file: git-proxy.ts (the credential
 * proxy) with pkt-line.ts (reading a push's ref updates) and local-repository.ts (`git http-backend` for `file://`
 * repositories), egress-proxy.ts with address-policy.ts (which addresses are the internet) and egress-denials.ts
 * (the bounded record of refusals), and gateway-limits.ts (what a session may hold on the host). Their exports are
 * re-exported here, so callers import the gateway from one place.
 */
import { randomBytes } from 'node:crypto';
import type * as http from 'node:http';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { Failure } from '../../shared/failures.js';
import { isLocalRepository, repositoryName, secretNames } from '../../shared/repositories.js';
import type { EgressDenial, RepositoryResource, SandboxRef } from '../../shared/types.js';
import { unknownSecretsMessage, type Vault } from '../../vault/index.js';
import { DenialLog, joinBatches, takeHandoff } from './egress-denials.js';
import { createEgressProxy } from './egress-proxy.js';
import { DEFAULT_GATEWAY_LIMITS, type GatewayLimits } from './gateway-limits.js';
import { createGitProxy } from './git-proxy.js';
import { localProblem } from './local-repository.js';
import { resourceFailed } from './failures.js';
import { HOST_MOUNT, Slots, type Slot } from './slot.js';

export { classifyAddress, hostAllowed, isInternalAddress, isLoopback, ownAddresses, parseAddress } from './address-policy.js';
export type { AddressClass } from './address-policy.js';
export { boundDenial, DenialLog, MAX_DENIAL_HOST, MAX_DENIALS } from './egress-denials.js';
export { Allowance, DEFAULT_GATEWAY_LIMITS } from './gateway-limits.js';
export type { GatewayLimits } from './gateway-limits.js';
export { startAnswer, upstreamStatus } from './http-answer.js';
export { localProblem, relayCgiOutput, serveLocal } from './local-repository.js';
export {
  BodyError,
  MAX_PKT_LINE,
  MAX_REF_UPDATE_BYTES,
  pktLine,
  pushAllowed,
  receivePackRefs,
  RefUpdateReader,
  rejectPush,
  SignedPushError,
} from './pkt-line.js';

/** Loopback port of the git credential proxy inside the container. */
export const GIT_PORT = 47011;
/** Loopback port of the egress proxy inside the container. */
export const EGRESS_PORT = 47012;
/** Worker-level settings of the gateway. */
export interface GatewaySettings {
  /** The hands directory: the sessions' slots, whose `sock/` and `state/` hold the proxies' sockets and state. */
  root: string;
  /** The deployment's scope (part of each slot's key). */
  scope?: string;
  /** Names the egress proxy resolves to fixed addresses (`name -> address`), before DNS. */
  hostMap?: Record<string, string>;
  /** Bounds of each session's proxies, where they differ from `DEFAULT_GATEWAY_LIMITS`. */
  limits?: Partial<GatewayLimits>;
}

/** Whether a sandbox needs the gateway: it has repositories or a way out through the egress proxy. */
export function needsGateway(ref: SandboxRef): boolean {
  return (ref.resources?.length ?? 0) > 0 || usesEgress(ref);
}

/** The container side of a session's gateway: where its sockets are, the shell's environment, the ports to relay. */
export interface GatewayMount {
  /** The slot's `sock/` directory on the host (mounted at /run/tandem-host). */
  hostDir: string;
  env: string[];
  /** Loopback port in the sandbox -> socket name in /run/tandem-host, for the toolbox to relay. */
  ports: Record<string, string>;
}

/** URL of a repository's remote inside the sandbox: the forwarded proxy port, with the phantom token. */
export function remoteUrl(token: string, index: number, r: RepositoryResource): string {
  return `http://tandem:${token}@127.0.0.1:${GIT_PORT}/${index}/${encodeURIComponent(repositoryName(r.url))}.git`;
}

/** Where the egress proxy's worker hands its denials over to the others (`state/` is never mounted). */
function denialsDir(slot: Slot): string {
  return join(slot.state, 'denials');
}

/** Listens on a unix socket, taking it over when no live process answers on it. */
async function listenOn(server: net.Server, path: string): Promise<boolean> {
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.createConnection(path);
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
  if (alive) return false; // another worker on this host serves it
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o666); // the sandbox user (uid 1000) connects through the read-only mount
  return true;
}

interface SessionProxies {
  ref: SandboxRef;
  token: string;
  slot: Slot;
  servers: net.Server[];
  /** The refusals of the egress proxy this worker serves, when it serves one (limited egress only). */
  denials: DenialLog;
}

/** Whether a session's network policy (limited or unrestricted) uses the egress proxy: only then does it get one. */
export function usesEgress(ref: SandboxRef): boolean {
  const policy = ref.config.network?.policy;
  return policy === 'limited' || policy === 'unrestricted';
}

/** The gateway of one worker: the proxies of the sessions whose sandboxes it provisions or runs tools in. */
export class Gateway {
  private readonly sessions = new Map<string, SessionProxies>();
  private readonly starting = new Map<string, Promise<SessionProxies>>();

  private readonly limits: GatewayLimits;
  /** The sessions' slots (only their directories: the workspace is the hands' business). */
  private readonly slots: Slots;

  constructor(
    private readonly settings: GatewaySettings,
    private readonly vault: Vault | undefined,
  ) {
    this.limits = { ...DEFAULT_GATEWAY_LIMITS, ...settings.limits };
    this.slots = new Slots(settings.root, settings.scope ?? '', 'volume');
  }

  /** Fails with `Vault.SecretMissing` (not retryable) when the vault lacks a secret the sandbox names. */
  checkSecrets(ref: SandboxRef): void {
    const names = secretNames({ agent: {}, resources: ref.resources ?? [] });
    if (names.length === 0) return;
    const missing = this.vault ? this.vault.missing(names) : names;
    if (missing.length > 0)
      throw ApplicationFailure.create({
        type: Failure.VaultSecretMissing,
        message: this.vault
          ? unknownSecretsMessage(missing)
          : `this worker has no vault, so it cannot supply secret "${missing[0]}"; start the worker with a vault`,
        nonRetryable: true,
      });
  }

  /**
   * Fails with `Sandbox.ResourceFailed` (not retryable) when a repository's URL is neither http(s) nor a local git
   * repository that exists on this host. Checked before a container is created (and its repositories cloned).
   */
  checkRepositories(ref: SandboxRef): void {
    for (const repo of ref.resources ?? []) {
      const problem = isLocalRepository(repo.url)
        ? localProblem(repo.url)
        : /^https?:\/\//.test(repo.url)
          ? undefined
          : 'is not an http(s) or file:// URL';
      if (problem)
        throw resourceFailed(`repository ${repo.url} ${problem}`, true);
    }
  }

  /**
   * Starts (or finds) the session's proxies and returns what the container needs: the host directory to mount
   * and the environment. Idempotent; any worker on the host can take over a session whose proxy process died.
   */
  async ensure(ref: SandboxRef): Promise<GatewayMount> {
    this.checkSecrets(ref);
    const s = await this.start(ref);
    s.ref = ref;
    const env = ['TANDEM_SHELL_ENV_GIT_TERMINAL_PROMPT=0'];
    const ports: Record<string, string> = {};
    if ((ref.resources?.length ?? 0) > 0) ports[GIT_PORT] = 'git.sock';
    if (usesEgress(ref)) {
      const proxy = `http://127.0.0.1:${EGRESS_PORT}`;
      for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'])
        env.push(`TANDEM_SHELL_ENV_${k}=${proxy}`);
      for (const k of ['NO_PROXY', 'no_proxy']) env.push(`TANDEM_SHELL_ENV_${k}=127.0.0.1,localhost`);
      ports[EGRESS_PORT] = 'egress.sock';
    }
    return { hostDir: s.slot.sock, env, ports };
  }

  /** The session's phantom token (random, worker-side; forgotten when the session's sandbox is removed). */
  async token(ref: SandboxRef): Promise<string> {
    return (await this.start(ref)).token;
  }

  private start(ref: SandboxRef): Promise<SessionProxies> {
    const id = ref.session_id;
    const existing = this.sessions.get(id);
    const wanted = usesEgress(ref) ? 2 : 1;
    if (existing && existing.servers.length === wanted && existing.servers.every((s) => s.listening))
      return Promise.resolve(existing);
    let p = this.starting.get(id);
    if (!p) {
      p = this.open(ref).finally(() => this.starting.delete(id));
      this.starting.set(id, p);
    }
    return p;
  }

  private async open(ref: SandboxRef): Promise<SessionProxies> {
    const slot = this.slots.prepare(ref.session_id);
    const tokenFile = join(slot.state, 'token');
    let token: string;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch {
      token = randomBytes(24).toString('hex');
      writeFileSync(tokenFile, token, { mode: 0o600 });
    }
    const old = this.sessions.get(ref.session_id);
    for (const srv of old?.servers ?? []) srv.close();
    // The record of refusals outlives a re-opening: what it holds is reported with the next tool call.
    const denials = old?.denials ?? new DenialLog(denialsDir(slot), this.limits.denials);
    const s: SessionProxies = { ref, token, slot, servers: [], denials };
    const proxies: Array<[http.Server, string]> = [[createGitProxy(s, this.vault, this.limits), 'git.sock']];
    // Only a session whose network policy uses it gets an egress proxy: no other has a socket to flood.
    if (usesEgress(ref)) proxies.push([createEgressProxy(s, this.settings.hostMap, this.limits), 'egress.sock']);
    for (const [server, name] of proxies) {
      if (await listenOn(server, join(slot.sock, name))) s.servers.push(server);
    }
    this.sessions.set(ref.session_id, s);
    return s;
  }

  /**
   * Requests the egress proxy refused since the last call, oldest first (and forgets them): at most
   * `limits.denials`, the last one with `dropped` when more were refused. Taken from this worker's memory when it
   * serves the session's egress proxy, and from the handoff files of the worker that does when another one does.
   */
  drainDenials(sessionId: string): EgressDenial[] {
    const mine = this.sessions.get(sessionId)?.denials;
    const batches = mine ? mine.drain() : takeHandoff(denialsDir(this.slots.paths(sessionId)));
    return joinBatches(batches, this.limits.denials);
  }

  /** Stops the session's proxies and forgets its phantom token (the slot itself is removed with the sandbox). */
  close(sessionId: string): void {
    const s = this.sessions.get(sessionId);
    this.sessions.delete(sessionId);
    s?.denials.close();
    for (const srv of s?.servers ?? []) srv.close();
    const slot = this.slots.paths(sessionId);
    for (const name of ['git.sock', 'egress.sock']) rmSync(join(slot.sock, name), { force: true });
    rmSync(slot.state, { recursive: true, force: true });
  }

  /** Stops every proxy of this worker (its sessions' directories stay for another worker to take over). */
  shutdown(): void {
    for (const s of this.sessions.values()) {
      s.denials.close();
      for (const srv of s.servers) srv.close();
    }
    this.sessions.clear();
  }
}
