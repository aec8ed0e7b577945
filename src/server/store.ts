/**
 * Stored API resources in Temporal: each agent, environment and vault is one `tandemResource` entity workflow
 * (workflow ID = resource id). Creating starts it, changes go through its `apply` update, reads through its query,
 * and listing through visibility (`TandemKind`, `TandemArchived` search attributes). No other database.
 */
import { randomBytes } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { SA_ARCHIVED, SA_KIND } from '../shared/names.js';
import {
  APPLY_UPDATE,
  GET_RESOURCE_QUERY,
  RESOURCE_WORKFLOW,
  type ResourceKind,
  type ResourceOp,
  type ResourceRecord,
  type ResourceState,
} from '../shared/resources.js';
import { ApiError, decodeCursor, encodeCursor, notFound, pageLimit } from './http.js';

/** A new id: prefix and 24 random base32 characters. */
export function newId(prefix: string): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  return `${prefix}_${[...randomBytes(24)].map((b) => alphabet[b % 32]).join('')}`;
}

const PREFIX: Record<ResourceKind, string> = { agent: 'agent', environment: 'env', vault: 'vlt' };
const LABEL: Record<ResourceKind, string> = { agent: 'agent', environment: 'environment', vault: 'vault' };

/** Access to the entity workflows of one kind. */
export class ResourceStore {
  constructor(
    private readonly temporal: Client,
    private readonly taskQueue: string,
    readonly kind: ResourceKind,
  ) {}

  /** Starts the entity of a new record (its id and dates are set here) and returns the record. */
  async create(fields: Record<string, unknown>): Promise<ResourceRecord> {
    const id = newId(PREFIX[this.kind]);
    const now = new Date().toISOString();
    const record = {
      id,
      ...fields,
      created_at: now,
      updated_at: now,
      archived_at: null,
      ...(this.kind === 'agent' ? { version: 1 } : {}),
    } as ResourceRecord;
    const state: ResourceState = { kind: this.kind, versions: [record], credentials: {} };
    try {
      await this.temporal.workflow.start(RESOURCE_WORKFLOW, {
        taskQueue: this.taskQueue,
        workflowId: id,
        args: [state],
        searchAttributes: { [SA_KIND]: [this.kind], [SA_ARCHIVED]: ['false'] },
        staticSummary: `${this.kind} ${String(fields.name ?? fields.display_name ?? id)}`,
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new ApiError(409, `${this.kind} "${id}" already exists`);
      throw err;
    }
    return record;
  }

  /** The entity's state; 404 when it does not exist, was deleted, or is of another kind. */
  async state(id: string): Promise<ResourceState> {
    const handle = this.temporal.workflow.getHandle(id);
    const description = await handle.describe().catch((err: unknown) => {
      const code = (err as { code?: number })?.code ?? (err as { cause?: { code?: number } })?.cause?.code;
      if (code === 5 || (err as Error)?.name === 'WorkflowNotFoundError') throw notFound(LABEL[this.kind], id);
      throw err;
    });
    if (description.type !== RESOURCE_WORKFLOW || description.status.name !== 'RUNNING') throw notFound(LABEL[this.kind], id);
    const state = await handle.query<ResourceState>(GET_RESOURCE_QUERY);
    if (state.kind !== this.kind) throw notFound(LABEL[this.kind], id);
    return state;
  }

  /** The current record (or the given version of an agent). */
  async get(id: string, version?: number): Promise<ResourceRecord> {
    const state = await this.state(id);
    if (version === undefined) return state.versions[state.versions.length - 1]!;
    const found = state.versions.find((v) => v.version === version);
    if (!found) throw new ApiError(404, `agent "${id}" has no version ${version}`);
    return found;
  }

  /** Applies one operation through the entity's update and returns the record it answers with. */
  async apply(id: string, op: ResourceOp): Promise<ResourceRecord> {
    await this.state(id); // 404 before an update that would wait for a missing workflow
    return this.temporal.workflow.getHandle(id).executeUpdate<ResourceRecord, [ResourceOp]>(APPLY_UPDATE, { args: [op] });
  }

  /** Deletes the resource: the entity ends, and its workflow is removed from Temporal. */
  async remove(id: string): Promise<void> {
    await this.apply(id, { op: 'delete' });
    const handle = this.temporal.workflow.getHandle(id);
    await handle.result().catch(() => undefined);
    await this.temporal.workflowService
      .deleteWorkflowExecution({ namespace: this.temporal.options.namespace, workflowExecution: { workflowId: id } })
      .catch(() => undefined);
  }

  /**
   * One page of current records, newest first, through visibility. Archived ones only with `includeArchived`;
   * `filter` drops records after reading (a page may then hold fewer than `limit`).
   */
  async list(
    query: URLSearchParams,
    includeArchived: boolean,
    filter: (r: ResourceRecord) => boolean = () => true,
  ): Promise<{ data: ResourceRecord[]; next_page: string | null }> {
    const limit = pageLimit(query);
    const cursor = decodeCursor<{ token: string }>(query);
    const q = [
      `WorkflowType = '${RESOURCE_WORKFLOW}'`,
      `${SA_KIND} = '${this.kind}'`,
      `ExecutionStatus = 'Running'`,
      ...(includeArchived ? [] : [`${SA_ARCHIVED} = 'false'`]),
    ].join(' AND ');
    const res = await this.temporal.workflowService.listWorkflowExecutions({
      namespace: this.temporal.options.namespace,
      query: q,
      pageSize: limit,
      nextPageToken: cursor ? Buffer.from(cursor.token, 'base64') : undefined,
    });
    const records = await Promise.all(
      (res.executions ?? []).map((e) =>
        this.state(e.execution?.workflowId ?? '')
          .then((s) => s.versions[s.versions.length - 1]!)
          .catch(() => undefined),
      ),
    );
    const data = records.filter((r): r is ResourceRecord => !!r && (includeArchived || !r.archived_at) && filter(r));
    const token = res.nextPageToken?.length ? Buffer.from(res.nextPageToken).toString('base64') : null;
    return { data, next_page: token ? encodeCursor({ token }) : null };
  }
}
