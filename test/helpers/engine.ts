/**
 * A second Docker engine on this machine, for tests that need more than one hands host or an engine set up
 * differently (user-namespace remapping): its own data root, exec root, pid file and socket,
 * no bridge network (sandboxes need none). Its data root is kept under .tandem/engines/<name>, so the sandbox image
 * is loaded into it once and found by later runs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { projectRoot } from '../../src/cli/dev-server.js';

/** A running engine. */
export interface Engine {
  name: string;
  /** `unix:///…` address of its API socket (DOCKER_HOST). */
  host: string;
  socket: string;
  docker: Docker;
  /**
   * SIGKILLs the engine, its containerd and shims, and its containers' processes: what a machine that died would
   * have taken with it. Resolves with how many container processes it killed.
   */
  kill(): Promise<number>;
  /** Stops the engine, removing its containers first. */
  stop(): Promise<void>;
}

/** Options of {@link startEngine}. */
export interface EngineOptions {
  /** `--userns-remap=default`: containers run in a user namespace of the `dockremap` user's range. */
  userns?: boolean;
}

/** Starts (or restarts) engine `name` and waits until it answers and holds the sandbox image. */
export async function startEngine(name: string, opts: EngineOptions = {}): Promise<Engine> {
  const state = join(projectRoot, '.tandem', 'engines', name);
  const run = `/run/tandem-engines/${name}`;
  mkdirSync(state, { recursive: true });
  mkdirSync(run, { recursive: true });
  const socket = `${run}/docker.sock`;
  const pidfile = `${run}/dockerd.pid`;
  stopStale(pidfile, run);
  const config = join(state, 'daemon.json');
  writeFileSync(config, JSON.stringify(opts.userns ? { 'userns-remap': 'default' } : {}));
  const log = openSync(join(state, 'dockerd.log'), 'a');
  const child: ChildProcess = spawn(
    'dockerd',
    [
      '--config-file', config,
      '--data-root', join(state, 'data'),
      '--exec-root', join(run, 'exec'),
      '--pidfile', pidfile,
      '-H', `unix://${socket}`,
      '--bridge', 'none',
      '--iptables=false',
      '--ip-masq=false',
    ],
    { stdio: ['ignore', log, log], detached: true },
  );
  child.unref();
  const docker = new Docker({ socketPath: socket });
  const deadline = Date.now() + 60_000;
  while (!(await docker.ping().then(() => true, () => false))) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`engine ${name} did not come up: ${readFileSync(join(state, 'dockerd.log'), 'utf8').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await loadImage(docker, 'tandem-sandbox:latest');
  const kill = async () => {
    // The engine, its containerd and every shim, and the containers' processes (a shim's children outlive it).
    const ids = (await docker.listContainers({ all: true }).catch(() => [])).map((c) => c.Id);
    spawnSync('pkill', ['-KILL', '-f', join(run, 'exec')]);
    const killed = killContainerProcesses(ids);
    try {
      process.kill(child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    while (child.exitCode === null && child.signalCode === null) await new Promise((r) => setTimeout(r, 50));
    return killed;
  };
  return {
    name,
    host: `unix://${socket}`,
    socket,
    docker,
    kill,
    async stop() {
      const containers = await docker.listContainers({ all: true }).catch(() => []);
      await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => void kill(), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * SIGKILLs the processes in the cgroups of these containers (cgroup v1 or v2, cgroupfs or systemd driver). Returns
 * how many there were.
 */
export function killContainerProcesses(ids: string[]): number {
  let n = 0;
  for (const id of ids) {
    for (const p of [
      `/sys/fs/cgroup/pids/docker/${id}/cgroup.procs`,
      `/sys/fs/cgroup/docker/${id}/cgroup.procs`,
      `/sys/fs/cgroup/pids/system.slice/docker-${id}.scope/cgroup.procs`,
      `/sys/fs/cgroup/system.slice/docker-${id}.scope/cgroup.procs`,
    ]) {
      let pids: number[];
      try {
        pids = readFileSync(p, 'utf8').split('\n').filter(Boolean).map(Number);
      } catch {
        continue;
      }
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
          n++;
        } catch {
          // gone already
        }
      }
      break;
    }
  }
  return n;
}

/** Copies an image of the main engine into `docker` unless it has the same image id already. */
async function loadImage(docker: Docker, image: string): Promise<void> {
  const main = new Docker();
  const wanted = (await main.getImage(image).inspect()).Id;
  const have = await docker.getImage(image).inspect().then((i) => i.Id, () => undefined);
  if (have === wanted) return;
  const saved = await main.getImage(image).get();
  const stream = await docker.loadImage(saved as unknown as NodeJS.ReadableStream);
  await new Promise((resolve, reject) => docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve(undefined))));
}

/** A previous run's engine of the same name, still running (a test process that died): killed first, with its containerd. */
function stopStale(pidfile: string, run: string): void {
  if (existsSync(pidfile)) {
    try {
      process.kill(Number(readFileSync(pidfile, 'utf8').trim()), 'SIGKILL');
    } catch {
      // not running
    }
    rmSync(pidfile, { force: true });
  }
  spawnSync('pkill', ['-KILL', '-f', join(run, 'exec')]);
}
