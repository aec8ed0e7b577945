/** Types for truncate.mjs (plain ESM so it can run in the sandbox without a build step). */
export declare const HEAD_SHARE: number;
export interface TruncateResult {
  text: string;
  truncated: boolean;
  omitted: number;
}
export declare function truncateOutput(text: string, cap: number, options?: { outputPath?: string }): TruncateResult;
export declare function truncateFile(
  filePath: string,
  cap: number,
  fs: Pick<typeof import('node:fs'), 'readFileSync' | 'openSync' | 'readSync' | 'closeSync' | 'statSync'>,
): TruncateResult;
