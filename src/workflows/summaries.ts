/**
 * Readable summaries for the Temporal UI: what each activity does (its `summary` user metadata) and the session's
 * current details (status, turn, last step). They are metadata, not decisions: changing them never changes what
 * the workflow does.
 */
import { setCurrentDetails } from '@temporalio/workflow';
import type { SessionState } from '../shared/types.js';

const MAX = 100;

function oneLine(s: string, max = MAX): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The summary of one tool call: its name and the part of its input a person looks for first. */
export function toolSummary(name: string, input: Record<string, unknown>): string {
  const pick = (k: string) => (typeof input[k] === 'string' ? (input[k] as string) : undefined);
  const main =
    name === 'bash'
      ? (pick('command') ?? (input.restart ? '(restart)' : undefined))
      : name === 'glob' || name === 'grep'
        ? [pick('pattern'), pick('path')].filter(Boolean).join(' in ')
        : pick('file_path');
  return oneLine(`${name}: ${main ?? JSON.stringify(input)}`);
}

/** Keeps the session's current details (shown in the Temporal UI) in step with its state and last step. */
export class SessionDetails {
  private last = '';

  constructor(private readonly state: SessionState) {}

  /** Records the step the session is taking now (a model call, a tool call) and refreshes the details. */
  step(step: string): void {
    this.last = oneLine(step);
    this.refresh();
  }

  /** Re-renders the details from the state. */
  refresh(): void {
    const s = this.state;
    const status = `**${s.status}**${s.stop_reason ? ` (${s.stop_reason.type})` : ''}`;
    const usage = `${s.usage.input_tokens} in / ${s.usage.output_tokens} out tokens`;
    const parts = [status, `turn ${s.turn}`, usage];
    if (this.last) parts.push(`last step: ${this.last}`);
    if (s.last_error) parts.push(`last error: ${oneLine(`${s.last_error.type}: ${s.last_error.message}`, 160)}`);
    setCurrentDetails(parts.join(' · '));
  }
}
