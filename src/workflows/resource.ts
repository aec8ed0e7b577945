/**
 * `tandemResource`: one long-lived entity workflow per stored API resource (an agent with all its versions, an
 * environment, a vault with its credential records). Changes go through the `apply` update, reads through the
 * `getResource` query; the workflow continues as new when its history grows, and ends when the resource is deleted.
 * Secret values never come here: the server writes them to the worker-side vault and keeps only names.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineUpdate,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { SA_ARCHIVED } from '../shared/names.js';
import {
  APPLY_UPDATE,
  GET_RESOURCE_QUERY,
  ResourceFailure,
  updatedRecord,
  type ResourceOp,
  type ResourceRecord,
  type ResourceState,
} from '../shared/resources.js';

/** `apply`: one change of the resource; returns the record it changed (or the current one after a no-op). */
export const applyUpdate = defineUpdate<ResourceRecord, [ResourceOp]>(APPLY_UPDATE);
/** `getResource`: the whole state (every agent version, every credential record). */
export const getResourceQuery = defineQuery<ResourceState>(GET_RESOURCE_QUERY);

const archivedKey = defineSearchAttributeKey(SA_ARCHIVED, SearchAttributeType.KEYWORD);

function fail(type: string, message: string): never {
  throw ApplicationFailure.create({ type, message, nonRetryable: true });
}

/** Runs one stored resource until it is deleted. */
export async function tandemResource(input: ResourceState): Promise<void> {
  const state: ResourceState = input;
  let deleted = false;
  const now = () => new Date(Date.now()).toISOString();
  const current = (): ResourceRecord => state.versions[state.versions.length - 1]!;
  const versioned = state.kind === 'agent';

  function credential(id: string): ResourceRecord {
    const c = state.credentials[id];
    if (!c) fail(ResourceFailure.notFound, `credential "${id}" is not in this vault`);
    return c;
  }

  function replace(record: ResourceRecord): void {
    if (versioned && record.version !== current().version) state.versions.push(record);
    else state.versions[state.versions.length - 1] = record;
  }

  function apply(op: ResourceOp): ResourceRecord {
    if (deleted) fail(ResourceFailure.notFound, `${state.kind} "${current().id}" was deleted`);
    const at = now();
    switch (op.op) {
      case 'update': {
        if (op.credential_id) {
          const c = credential(op.credential_id);
          if (c.archived_at) fail(ResourceFailure.invalid, `credential "${c.id}" is archived and cannot be updated`);
          const next = updatedRecord(c, op, at, { versioned: false });
          state.credentials[c.id] = next;
          return next;
        }
        const cur = current();
        if (cur.archived_at) fail(ResourceFailure.invalid, `${state.kind} "${cur.id}" is archived and cannot be updated`);
        if (op.expected_version !== undefined && versioned && op.expected_version !== cur.version) {
          fail(
            ResourceFailure.conflict,
            `version ${op.expected_version} is not the current version of agent "${cur.id}" (${String(cur.version)}); retrieve it and apply the update again`,
          );
        }
        const next = updatedRecord(cur, op, at, { versioned, emptyDeletes: state.kind === 'environment' });
        if (next !== cur) replace(next);
        return next;
      }
      case 'archive': {
        if (op.credential_id) {
          const c = credential(op.credential_id);
          if (!c.archived_at) state.credentials[c.id] = { ...c, archived_at: at, updated_at: at };
          return state.credentials[c.id]!;
        }
        const cur = current();
        if (cur.archived_at) return cur;
        const next = { ...cur, archived_at: at, updated_at: at };
        state.versions[state.versions.length - 1] = next;
        upsertSearchAttributes([{ key: archivedKey, value: 'true' }]);
        return next;
      }
      case 'delete': {
        if (op.credential_id) {
          const c = credential(op.credential_id);
          delete state.credentials[c.id];
          return c;
        }
        deleted = true;
        return current();
      }
      case 'add_credential': {
        if (current().archived_at) fail(ResourceFailure.invalid, `vault "${current().id}" is archived`);
        state.credentials[op.record.id] = op.record;
        return op.record;
      }
      default:
        return fail(ResourceFailure.invalid, `unknown operation ${JSON.stringify((op as { op?: unknown }).op)}`);
    }
  }

  setHandler(getResourceQuery, () => state);
  setHandler(applyUpdate, apply, {
    validator: (op) => {
      if (state.kind !== 'vault' && (op.op === 'add_credential' || ('credential_id' in op && op.credential_id)))
        fail(ResourceFailure.invalid, `a ${state.kind} has no credentials`);
    },
  });

  await condition(() => deleted || workflowInfo().continueAsNewSuggested);
  await condition(allHandlersFinished);
  if (deleted) return;
  await continueAsNew<typeof tandemResource>(state);
}
