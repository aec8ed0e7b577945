// Frames of the toolbox channel, shared by the toolbox (inside the sandbox) and the hands host (outside it).
//
// A frame is a 4-byte big-endian length, then that many bytes: a 1-byte kind and the payload. Kind 1 is a JSON
// message. The reader checks the length against its limit before it buffers anything, so a peer that announces
// 60 MB is refused after 4 bytes, not after 60 MB. Plain ESM so it runs in the sandbox without a build step.

/** Kind of a frame whose payload is one JSON value (UTF-8). */
export const FRAME_JSON = 1;

/** A peer sent something that is not a frame of this protocol, or a frame over the reader's limit. */
export class FrameError extends Error {}

/** Encodes one JSON message as a frame. */
export function encodeFrame(message) {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame.writeUInt32BE(body.length + 1, 0);
  frame[4] = FRAME_JSON;
  body.copy(frame, 5);
  return frame;
}

/**
 * Splits a byte stream into JSON messages. `push` returns the messages its chunk completed and throws a FrameError
 * on a frame longer than `maxBytes`, an unknown kind, or a payload that is not JSON. It never holds more than
 * `maxBytes` plus one chunk.
 */
export class FrameDecoder {
  constructor(maxBytes) {
    this.maxBytes = maxBytes;
    this.parts = [];
    this.size = 0;
  }

  push(chunk) {
    this.parts.push(chunk);
    this.size += chunk.length;
    const messages = [];
    while (this.size >= 4) {
      const head = this.peek(4);
      const length = head.readUInt32BE(0);
      if (length < 1 || length > this.maxBytes) {
        throw new FrameError(`a frame of ${length} bytes (the limit is ${this.maxBytes})`);
      }
      if (this.size < 4 + length) break;
      const frame = this.take(4 + length);
      if (frame[4] !== FRAME_JSON) throw new FrameError(`a frame of unknown kind ${frame[4]}`);
      try {
        messages.push(JSON.parse(frame.toString('utf8', 5)));
      } catch (e) {
        throw new FrameError(`a frame that is not JSON (${e.message})`);
      }
    }
    return messages;
  }

  peek(n) {
    if (this.parts[0].length < n) this.parts = [Buffer.concat(this.parts, this.size)];
    return this.parts[0].subarray(0, n);
  }

  take(n) {
    const all = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.size);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.parts = rest.length ? [rest] : [];
    this.size = rest.length;
    return out;
  }
}
