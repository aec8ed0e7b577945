/**
 * List cost of model calls from their token usage: the CLI's estimate of a session's cost, and the meter of a
 * session's budget (`limits.max_cost_usd`, the API's `budget`). Prices in USD per million tokens, from Anthropic's
 * pricing page (https://platform.claude.com/docs/en/about-claude/pricing, "Model pricing" and "Prompt caching"),
 * as of November 2026; cache writes are priced at the 5-minute rate. A model id matches the longest prefix below;
 * an unknown model gets no estimate rather than a guess.
 */
import type { AgentDefinition, Usage } from './types.js';

/** Per-million-token prices of one model family. */
export interface ModelPrice {
  input: number;
  output: number;
  cacheWrite: number;
  cacheRead: number;
}

/** Model id prefix → price. */
export const PRICES: Record<string, ModelPrice> = {
  'claude-fable-5-1': { input: 10, output: 50, cacheWrite: 12.5, cacheRead: 0.25 },
  'claude-fable-5': { input: 10, output: 50, cacheWrite: 12.5, cacheRead: 1 },
  'claude-opus-5-5': { input: 4, output: 20, cacheWrite: 5, cacheRead: 0.2 },
  'claude-opus-5': { input: 5, output: 25, cacheWrite: 6.25, cacheRead: 0.5 },
  'claude-opus-4-5': { input: 5, output: 25, cacheWrite: 6.25, cacheRead: 0.5 },
  'claude-opus-4-6': { input: 5, output: 25, cacheWrite: 6.25, cacheRead: 0.5 },
  'claude-opus-4-7': { input: 5, output: 25, cacheWrite: 6.25, cacheRead: 0.5 },
  'claude-opus-4-8': { input: 5, output: 25, cacheWrite: 6.25, cacheRead: 0.5 },
  'claude-opus-4': { input: 15, output: 75, cacheWrite: 18.75, cacheRead: 1.5 },
  'claude-sonnet-5-5': { input: 2, output: 10, cacheWrite: 2.5, cacheRead: 0.1 },
  'claude-sonnet-5': { input: 2, output: 10, cacheWrite: 2.5, cacheRead: 0.2 },
  'claude-sonnet-4': { input: 3, output: 15, cacheWrite: 3.75, cacheRead: 0.3 },
  // Haiku 5.5 at its rate for prompts up to 100k tokens (longer prompts cost more).
  'claude-haiku-5-5': { input: 0.1, output: 0.5, cacheWrite: 0.125, cacheRead: 0.01 },
  'claude-haiku-4-5': { input: 1, output: 5, cacheWrite: 1.25, cacheRead: 0.1 },
};

/** The price entry of `model` (longest matching prefix), or undefined. */
export function priceOf(model: string): { prefix: string; price: ModelPrice } | undefined {
  const prefix = Object.keys(PRICES)
    .filter((p) => model === p || model.startsWith(`${p}-`) || model.startsWith(`${p}@`) || model.startsWith(`${p}[`))
    .sort((a, b) => b.length - a.length)[0];
  return prefix ? { prefix, price: PRICES[prefix]! } : undefined;
}

/**
 * List cost of `usage` on `model` in micro-dollars (a price in USD per million tokens is micro-dollars a token),
 * rounded up so that a budget is reached no later than the real charge; undefined when the model has no price here.
 */
export function costMicros(model: string, usage: Usage): number | undefined {
  const entry = priceOf(model);
  if (!entry) return undefined;
  const p = entry.price;
  return Math.ceil(
    usage.input_tokens * p.input +
      usage.output_tokens * p.output +
      usage.cache_creation_input_tokens * p.cacheWrite +
      usage.cache_read_input_tokens * p.cacheRead,
  );
}

/** Estimated cost in USD of `usage` on `model`, or null when the model has no price here. */
export function estimateCost(model: string | null, usage: Usage): number | null {
  const micros = model ? costMicros(model, usage) : undefined;
  return micros === undefined ? null : micros / 1_000_000;
}

/**
 * The models `agent` and the sub-agents of its roster (at any depth) use that have no price here: a session with a
 * cost budget needs every one of them priced, or it could not meter what it spends.
 */
export function unpricedModels(agent: AgentDefinition): string[] {
  const found = new Set<string>();
  const walk = (a: AgentDefinition): void => {
    const model = typeof a.model === 'string' ? a.model : a.model.id;
    if (!priceOf(model)) found.add(model);
    for (const entry of a.multiagent?.agents ?? []) if (typeof entry === 'object' && entry.type === 'agent') walk(entry.definition);
  };
  walk(agent);
  return [...found];
}

/** Micro-dollars as dollars for a sentence: `$0.0123` (cents and two more places), never rounded to zero. */
export function dollars(micros: number): string {
  return `$${(micros / 1_000_000).toFixed(micros > 0 && micros < 100 ? 6 : 4)}`;
}
