/**
 * Stored resources of the Managed Agents API (agents, environments, vaults with their credentials): plain JSON
 * records, and the pure rules that change them. Each resource lives in one `tandemResource` entity workflow; this
 * file is shared by that workflow and the HTTP server, so it imports nothing at runtime.
 */

/** Kinds of stored resources. */
export type ResourceKind = 'agent' | 'environment' | 'vault';

/** A stored record: the API object as returned, minus secrets (which never reach a workflow). */
export type ResourceRecord = Record<string, unknown> & {
  id: string;
  created_at: string;
  updated_at: string;
  archived_at: string | null;
  metadata: Record<string, string>;
};

/** Workflow input and carried state of a `tandemResource` entity. */
export interface ResourceState {
  kind: ResourceKind;
  /** Every version of an agent, oldest first; environments and vaults keep only their current record. */
  versions: ResourceRecord[];
  /** Credential records of a vault, by id (secret values are in the worker-side vault, never here). */
  credentials: Record<string, ResourceRecord>;
}

/** A metadata patch: a string upserts the key, null (or, for environments, an empty string) deletes it. */
export type MetadataPatch = Record<string, string | null>;

/** The change one update asks for. */
export interface ResourceUpdate {
  /** Top-level fields replaced as given (already validated and normalised by the server). */
  set: Record<string, unknown>;
  metadata?: MetadataPatch | null;
  /** The version the caller last saw (agents): a different current version is a conflict. */
  expected_version?: number;
  /** Credential id when the update is about one credential of a vault. */
  credential_id?: string;
}

/** Operations of the `apply` update. */
export type ResourceOp =
  | ({ op: 'update' } & ResourceUpdate)
  | { op: 'archive'; credential_id?: string }
  | { op: 'delete'; credential_id?: string }
  | { op: 'add_credential'; record: ResourceRecord };

/** Failure types an entity's update throws; the server maps them onto HTTP statuses. */
export const ResourceFailure = {
  conflict: 'Api.Conflict',
  invalid: 'Api.InvalidRequest',
  notFound: 'Api.NotFound',
} as const;

/** Workflow type of the entity workflows. */
export const RESOURCE_WORKFLOW = 'tandemResource';
/** Update that changes an entity (returns the changed record). */
export const APPLY_UPDATE = 'apply';
/** Query returning the whole `ResourceState`. */
export const GET_RESOURCE_QUERY = 'getResource';

/** Applies a metadata patch; an empty-string value deletes when `emptyDeletes`. */
export function patchMetadata(
  current: Record<string, string>,
  patch: MetadataPatch | null | undefined,
  emptyDeletes = false,
): Record<string, string> {
  if (patch === undefined) return current;
  if (patch === null) return {};
  const out = { ...current };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null || (emptyDeletes && v === '')) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** Key-order-independent JSON equality of two plain values. */
export function sameJson(a: unknown, b: unknown): boolean {
  return stable(a) === stable(b);
}

function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stable(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Fields that say when and which version, not what: a change of only these is no change. */
const BOOKKEEPING = new Set(['version', 'created_at', 'updated_at', 'archived_at']);

function content(r: ResourceRecord): Record<string, unknown> {
  return Object.fromEntries(Object.entries(r).filter(([k]) => !BOOKKEEPING.has(k)));
}

/**
 * The record after an update, or the same record when nothing changed (a no-op update makes no new version).
 * `versioned` records (agents) get `version + 1`.
 */
export function updatedRecord(
  current: ResourceRecord,
  u: ResourceUpdate,
  now: string,
  opts: { versioned: boolean; emptyDeletes?: boolean },
): ResourceRecord {
  const next: ResourceRecord = {
    ...current,
    ...u.set,
    metadata: patchMetadata(current.metadata, u.metadata, opts.emptyDeletes),
  } as ResourceRecord;
  if (sameJson(content(next), content(current))) return current;
  next.updated_at = now;
  if (opts.versioned) next.version = (current.version as number) + 1;
  return next;
}
