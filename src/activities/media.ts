/**
 * Files named in a model request (`{type: 'file', file_id}` sources of images and documents in user messages) are
 * Tandem's file store's, which the model API does not know: `callModel` reads them and sends their bytes inline,
 * each time, so only the id is ever in a session's history. What cannot be sent becomes a sentence the model reads.
 */
import type { ContextBlock, ContextMessage } from '../harness/context.js';
import { FileStoreError, type FileStore } from '../files/store.js';
import { IMAGE_TYPES } from '../log/events.js';

/** The largest file inlined into a request (the Messages API takes requests of 32 MB, base64 grows bytes by 4/3). */
export const MAX_INLINE_BYTES = 20 * 1024 * 1024;

/** Replaces each file source of `messages` with the file's bytes (or a note), in place. */
export async function inlineFiles(messages: ContextMessage[], files: FileStore | undefined): Promise<void> {
  // The blocks of user messages, and those of tool results that carry images or documents.
  const lists: ContextBlock[][] = [];
  for (const m of messages) {
    lists.push(m.content);
    for (const b of m.content) if (b.type === 'tool_result' && typeof b.content !== 'string') lists.push(b.content);
  }
  for (const list of lists) {
    for (const [i, block] of list.entries()) {
      if ((block.type !== 'image' && block.type !== 'document') || block.source.type !== 'file') continue;
      const id = block.source.file_id;
      const note = (why: string) => (list[i] = { type: 'text', text: `[the ${block.type} file ${id} ${why}]` });
      if (!files) {
        note('cannot be read: this worker has no file store');
        continue;
      }
      const meta = await files.get(id);
      if (!meta) {
        note('is gone from the file store (deleted or expired)');
        continue;
      }
      if (meta.size_bytes > MAX_INLINE_BYTES) {
        note(`is ${meta.size_bytes} bytes, more than the ${MAX_INLINE_BYTES} a request carries`);
        continue;
      }
      const fits =
        block.type === 'image' ? IMAGE_TYPES.includes(meta.mime_type) : meta.mime_type === 'application/pdf' || meta.mime_type.startsWith('text/');
      if (!fits) {
        note(`is ${meta.mime_type}, which the model does not take as ${block.type === 'image' ? 'an image' : 'a document'}`);
        continue;
      }
      const data = await files.data(meta).catch((err: unknown) => {
        if (err instanceof FileStoreError && err.status === 404) return undefined;
        throw err; // a store that does not answer: the call is retried
      });
      if (!data) {
        note('is gone from the file store (deleted or expired)');
        continue;
      }
      block.source =
        block.type === 'document' && meta.mime_type.startsWith('text/')
          ? { type: 'text', media_type: 'text/plain', data: data.toString('utf8') }
          : { type: 'base64', media_type: meta.mime_type, data: data.toString('base64') };
    }
  }
}
