/** Types for frames.mjs (plain ESM so it can run in the sandbox without a build step). */
export declare const FRAME_JSON: number;
export declare class FrameError extends Error {}
export declare function encodeFrame(message: unknown): Buffer;
export declare class FrameDecoder {
  constructor(maxBytes: number);
  push(chunk: Buffer): unknown[];
}
