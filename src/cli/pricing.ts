/**
 * A rough cost estimate of a session from its token usage. Prices in USD per million tokens, from Anthropic's
 * pricing page (https://platform.claude.com/docs/en/about-claude/pricing, "Model pricing" and "Prompt caching"),
 * as of November 2026; cache writes are priced at the 5-minute rate. A model id matches the longest prefix below;
 * an unknown model gets no estimate rather than a guess.
 */
import type { Usage } from '../shared/types.js';

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

/** Estimated cost in USD of `usage` on `model`, or null when the model has no price here. */
export function estimateCost(model: string | null, usage: Usage): number | null {
  const entry = model ? priceOf(model) : undefined;
  if (!entry) return null;
  const p = entry.price;
  const dollars =
    usage.input_tokens * p.input +
    usage.output_tokens * p.output +
    usage.cache_creation_input_tokens * p.cacheWrite +
    usage.cache_read_input_tokens * p.cacheRead;
  return dollars / 1_000_000;
}
