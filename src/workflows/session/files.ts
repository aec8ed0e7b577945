/**
 * A session's files (Files API `file` resources): which are mounted now. The `tandem.session_files` update adds or
 * removes one while the session lives; its validator refuses a change that cannot be made before it reaches
 * history, and each accepted change is logged (`session.resource_added` / `session.resource_removed`). The hands
 * write the current set into the sandbox before each tool call, so a change shows at the next call, no restart.
 */
import { defineUpdate, setHandler } from '@temporalio/workflow';
import { SESSION_FILES_UPDATE } from '../../shared/names.js';
import { filesChangeProblem, type FilesChange } from '../../shared/files.js';
import type { FileResource } from '../../shared/types.js';
import type { SessionCore } from './core.js';

export const filesUpdate = defineUpdate<FileResource[], [FilesChange]>(SESSION_FILES_UPDATE);

export class SessionFiles {
  constructor(private readonly s: SessionCore) {
    const { state, input } = s;
    if (state.files === undefined && input.files?.length) state.files = [...input.files];
  }

  setHandler(): void {
    setHandler(filesUpdate, (change) => this.apply(change), {
      validator: (change) => {
        if (this.s.state.status === 'terminated') throw new Error('the session has ended; its files cannot change');
        if (!this.s.ownsSandbox) throw new Error('a sub-agent works in its parent\'s sandbox; change the files of the parent session');
        const problem = filesChangeProblem(this.s.state.files ?? [], change);
        if (problem) throw new Error(problem);
      },
    });
  }

  private apply(change: FilesChange): FileResource[] {
    const { state } = this.s;
    const files = state.files ?? [];
    if (change.add) {
      state.files = [...files, change.add];
      this.s.record({ type: 'session.resource_added', resource: change.add });
    } else if (change.remove) {
      state.files = files.filter((f) => f.id !== change.remove);
      this.s.record({ type: 'session.resource_removed', resource_id: change.remove });
    }
    return state.files ?? [];
  }
}
