/**
 * A sandbox's place on its hands host: a directory per session (its "slot") that outlives containers.
 *
 *   <hands dir>/<key>/          0711, this process's user
 *     meta.json                 session id, scope, creation time (the reaper and test teardown read it)
 *     sock/                     0755, bind-mounted read-only at /run/tandem-host: the toolbox channel sockets of
 *                               the host's processes and the gateway's proxy sockets; the sandbox user cannot
 *                               replace anything in it
 *     state/                    0700: the gateway's phantom token
 *     workspace.img, workspace/ the workspace: an ext4 image of `disk_mb` mounted (loop) on workspace/, which is
 *                               bind-mounted at /workspace; writes past the size fail with ENOSPC in the sandbox
 *     uploads/                  0755, this process's: the session's file resources, written here by the host and
 *                               bind-mounted read-only at /mnt/session/uploads
 *     outputs.img, outputs/     what the agent leaves for the session's owner, bind-mounted at /mnt/session/outputs
 *                               and published to the file store after each tool call: an ext4 image of 1 GiB,
 *                               owned by the sandbox user (without quotas, a plain directory of the sandbox user)
 *     outputs.json              what was published from outputs/ (sizes and times), out of the sandbox's reach
 *     skills/                   0755, this process's: the session's skills, bind-mounted read-only at /mnt/skills
 *
 * Without root or loop devices (`TANDEM_WORKSPACE_QUOTA=off`), the workspace is a Docker named volume instead and
 * has no size limit; a sandbox that asks for `disk_mb` is then refused rather than silently given none.
 *
 * The key hashes the deployment's scope with the session id, so two deployments on one host never share a slot,
 * a container or a workspace.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { provisionFailed } from './failures.js';

const run = promisify(execFile);

/** Where the slot's `sock/` directory is mounted in the container (read-only). */
export const HOST_MOUNT = '/run/tandem-host';
/** Default workspace size when the agent names none. */
export const DEFAULT_DISK_MB = 4096;
/** Size of a session's outputs directory where the host limits sizes. */
export const OUTPUTS_MB = 1024;
/** Where a session's file resources appear in the sandbox (read-only). */
export const UPLOADS_MOUNT = '/mnt/session/uploads';
/** Where the agent leaves files for the session's owner. */
export const OUTPUTS_MOUNT = '/mnt/session/outputs';
/** Where a session's skills appear in the sandbox (read-only). */
export const SKILLS_MOUNT = '/mnt/skills';

/** How workspaces are made on this host. */
export type WorkspaceMode = 'quota' | 'volume';

/** Where a session's slot lives, and what the container mounts from it. */
export interface Slot {
  key: string;
  dir: string;
  /** The control directory (sockets), mounted read-only at {@link HOST_MOUNT}. */
  sock: string;
  /** The gateway's private state directory. */
  state: string;
  /** What to bind at /workspace: a host path (quota mode) or a volume name. */
  workspace: string;
  /** The session's file resources, bound read-only at {@link UPLOADS_MOUNT}. */
  uploads: string;
  /** The session's outputs, bound at {@link OUTPUTS_MOUNT}. */
  outputs: string;
  /** The session's skills, bound read-only at {@link SKILLS_MOUNT}. */
  skills: string;
}

/** What the slot records about itself. */
export interface SlotMeta {
  session_id: string;
  scope: string;
  created_at: string;
  /** Set while the slot is a warm container's: the pid of the hands process that keeps it. */
  warm_owner?: number;
}

/** The sandbox user (1000:1000 in the container) as the host sees it: shifted when the engine remaps user ids. */
export interface SandboxOwner {
  uid: number;
  gid: number;
}

/**
 * The sandbox user as the host sees it. With `userns-remap`, the engine runs containers in a user namespace whose
 * ids start at the subordinate range of its remap user (`dockremap` for `default`, else the name given), so a host
 * directory the sandbox writes must belong to that range's 1000.
 */
export function sandboxOwner(securityOptions: string[], remapUser = 'dockremap', files = { subuid: '/etc/subuid', subgid: '/etc/subgid' }): SandboxOwner {
  if (!securityOptions.some((o) => o.includes('name=userns'))) return { uid: 1000, gid: 1000 };
  const base = (file: string) => {
    const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${remapUser}:`));
    const start = Number(line?.split(':')[1]);
    if (!Number.isInteger(start)) throw new Error(`the engine remaps user ids, but ${file} has no range for ${remapUser}`);
    return start;
  };
  return { uid: base(files.subuid) + 1000, gid: base(files.subgid) + 1000 };
}

/** The slot key of a session in a deployment: short, path-safe, and distinct across scopes. */
export function slotKey(scope: string, sessionId: string): string {
  return `s-${createHash('sha256').update(`${scope}\n${sessionId}`).digest('hex').slice(0, 16)}`;
}

/** Whether this host can give workspaces a size limit: root, loop devices and mkfs.ext4. */
export function quotaSupported(): boolean {
  if (process.getuid?.() !== 0 || !existsSync('/dev/loop-control')) return false;
  return ['/sbin/mkfs.ext4', '/usr/sbin/mkfs.ext4'].some((p) => existsSync(p));
}

/** Whether `path` is a mount point, from this process's mount table. */
export function isMountPoint(path: string): boolean {
  let table: string;
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return false;
  }
  const escaped = path.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return table.split('\n').some((line) => line.split(' ')[4] === escaped);
}

/** The session slots of one hands host. */
export class Slots {
  constructor(
    readonly root: string,
    readonly scope: string,
    readonly mode: WorkspaceMode,
  ) {}

  /** The paths of a session's slot (nothing is created). */
  paths(sessionId: string): Slot {
    const key = slotKey(this.scope, sessionId);
    const dir = join(this.root, key);
    return {
      key,
      dir,
      sock: join(dir, 'sock'),
      state: join(dir, 'state'),
      workspace: this.mode === 'quota' ? join(dir, 'workspace') : `tandem-ws-${key}`,
      uploads: join(dir, 'uploads'),
      outputs: join(dir, 'outputs'),
      skills: join(dir, 'skills'),
    };
  }

  /** Creates the slot's directories (idempotent) and returns its paths. */
  prepare(sessionId: string): Slot {
    const slot = this.paths(sessionId);
    mkdirSync(this.root, { recursive: true, mode: 0o711 });
    checkOwnRoot(this.root);
    mkdirSync(slot.state, { recursive: true, mode: 0o700 });
    mkdirSync(slot.sock, { recursive: true, mode: 0o755 });
    mkdirSync(slot.uploads, { recursive: true, mode: 0o755 });
    mkdirSync(slot.skills, { recursive: true, mode: 0o755 });
    chmodSync(slot.dir, 0o711);
    const meta = join(slot.dir, 'meta.json');
    if (!existsSync(meta)) {
      const m: SlotMeta = { session_id: sessionId, scope: this.scope, created_at: new Date().toISOString() };
      writeFileSync(meta, JSON.stringify(m) + '\n', { mode: 0o644 });
    }
    return slot;
  }

  /**
   * Makes the workspace ready to mount (quota mode: the image exists and is mounted), wiping it first when
   * `fresh`. Safe against another process of the host doing the same: the image is made under a temporary name
   * and renamed, and a second mount of one image is refused by mount(8) and then found mounted. Returns whether
   * the workspace is new (made by this call, so empty).
   */
  async mountWorkspace(slot: Slot, diskMb: number, owner: SandboxOwner, fresh = false): Promise<boolean> {
    if (this.mode !== 'quota') return false;
    if (fresh) await this.unmountWorkspace(slot, true);
    return mountImage(join(slot.dir, 'workspace.img'), slot.workspace, diskMb, owner, 'workspace');
  }

  /**
   * Makes the outputs directory ready to mount: an image of {@link OUTPUTS_MB} mounted on it (quota mode), else a
   * directory of the sandbox user. A rewind leaves it as it is: what was published stays published.
   */
  async mountOutputs(slot: Slot, owner: SandboxOwner): Promise<void> {
    if (this.mode === 'quota') {
      await mountImage(join(slot.dir, 'outputs.img'), slot.outputs, OUTPUTS_MB, owner, 'outputs');
      return;
    }
    mkdirSync(slot.outputs, { recursive: true, mode: 0o755 });
    chownSync(slot.outputs, owner.uid, owner.gid);
  }

  /** Unmounts the workspace (the container has stopped); `discard` also deletes its image. */
  async unmountWorkspace(slot: Slot, discard = false): Promise<void> {
    if (this.mode !== 'quota') return;
    await unmount(slot.workspace);
    if (discard) rmSync(join(slot.dir, 'workspace.img'), { force: true });
  }

  /** Removes the slot: unmounts the workspace and deletes the directory. */
  async remove(sessionId: string): Promise<void> {
    await removeSlotDir(this.paths(sessionId).dir);
  }

  /** The slots under this root, with what they record. */
  list(): Array<SlotMeta & { key: string }> {
    return listSlots(this.root);
  }
}

/**
 * Mounts the ext4 image `image` (made of `sizeMb`, owned by the sandbox user, when missing) on `dir`; returns whether
 * the image is new (so empty).
 */
async function mountImage(image: string, dir: string, sizeMb: number, owner: SandboxOwner, label: string): Promise<boolean> {
  if (isMountPoint(dir)) return false;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  let created = false;
  if (!existsSync(image)) {
    const tmp = `${image}.${randomBytes(4).toString('hex')}`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      ftruncateSync(fd, sizeMb * 1024 * 1024); // sparse: the disk holds only what is written
    } finally {
      closeSync(fd);
    }
    try {
      // No reserved blocks, lazy inode tables and journal (mounted with noinit_itable: never zeroed in the
      // background, so the image stays sparse).
      await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-L', label, '-E',
        `root_owner=${owner.uid}:${owner.gid},lazy_itable_init=1,lazy_journal_init=1,nodiscard`, tmp]);
      renameSync(tmp, image);
      created = true;
    } catch (err) {
      rmSync(tmp, { force: true });
      throw provisionFailed(`could not make the ${label} image: ${errorText(err)}`);
    }
  }
  try {
    await run('mount', ['-o', 'loop,nosuid,nodev,noinit_itable', image, dir]);
  } catch (err) {
    if (!isMountPoint(dir)) throw provisionFailed(`could not mount the ${label}: ${errorText(err)}`);
  }
  if (created) rmSync(join(dir, 'lost+found'), { recursive: true, force: true });
  return created;
}

/** The slots under a hands directory, with what they record (unreadable ones are skipped). */
export function listSlots(root: string): Array<SlotMeta & { key: string; dir: string }> {
  let names: string[] = [];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const out: Array<SlotMeta & { key: string; dir: string }> = [];
  for (const key of names) {
    const dir = join(root, key);
    try {
      out.push({ key, dir, ...(JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as SlotMeta) });
    } catch {
      // not a slot, or one being made
    }
  }
  return out;
}

/** Unmounts a slot's workspace (if mounted) and deletes the slot's directory. */
export async function removeSlotDir(dir: string): Promise<void> {
  await unmount(join(dir, 'workspace'));
  await unmount(join(dir, 'outputs'));
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Unmounts `path` if it is a mount point. A mount is busy for a moment after the container that used it stopped:
 * tried again for 2 s, then detached lazily (it goes once the last user has let go), so nothing is left mounted and
 * no later removal deletes through a live mount.
 */
async function unmount(path: string): Promise<void> {
  for (let i = 0; i < 20 && isMountPoint(path); i++) {
    await run('umount', [...(i === 19 ? ['-l'] : []), path]).catch(() => new Promise((r) => setTimeout(r, 100)));
  }
}

/**
 * The hands dir must be this process's own directory that nobody else can write: in a shared /tmp, another user
 * could otherwise have made it first and planted sockets or phantom tokens.
 */
export function checkOwnRoot(root: string): void {
  const st = lstatSync(root);
  const uid = process.getuid?.();
  if (!st.isDirectory() || st.isSymbolicLink() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
    throw provisionFailed(
      `the hands directory ${root} is not a directory of this user that only it can write; remove it or set TANDEM_HANDS_DIR`,
      true,
    );
  }
}

function errorText(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message || String(err)).split('\n').slice(-2).join(' ');
}
