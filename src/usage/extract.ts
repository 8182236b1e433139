/**
 * Folding one parsed response object (a whole JSON answer or one stream event) into the
 * usage seen so far. Later events overwrite earlier counts: stream totals are cumulative.
 */
import type { Usage, UsageFormat } from './types.ts';

type Obj = Record<string, unknown>;

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const obj = (v: unknown): Obj | undefined => (v && typeof v === 'object' ? (v as Obj) : undefined);

function set(u: Usage, field: keyof Usage, value: number | undefined): void {
  if (value !== undefined) u[field] = value;
}

function openai(u: Usage, event: Obj): void {
  // Responses API stream events carry the response object; its usage is final on
  // response.completed / .incomplete / .failed.
  const usage = obj(event.usage) ?? obj(obj(event.response)?.usage);
  if (!usage) return;
  set(u, 'input_tokens', num(usage.prompt_tokens) ?? num(usage.input_tokens));
  set(u, 'output_tokens', num(usage.completion_tokens) ?? num(usage.output_tokens));
  set(u, 'total_tokens', num(usage.total_tokens));
  const inDetails = obj(usage.prompt_tokens_details) ?? obj(usage.input_tokens_details);
  set(u, 'cache_read_input_tokens', num(inDetails?.cached_tokens));
  const outDetails = obj(usage.completion_tokens_details) ?? obj(usage.output_tokens_details);
  set(u, 'reasoning_tokens', num(outDetails?.reasoning_tokens));
}

function anthropic(u: Usage, event: Obj): void {
  // message_start: {message: {usage}}; message_delta and whole messages: {usage}.
  const usage = obj(event.usage) ?? obj(obj(event.message)?.usage);
  if (!usage) return;
  set(u, 'input_tokens', num(usage.input_tokens));
  set(u, 'output_tokens', num(usage.output_tokens));
  set(u, 'cache_read_input_tokens', num(usage.cache_read_input_tokens));
  set(u, 'cache_creation_input_tokens', num(usage.cache_creation_input_tokens));
}

function gemini(u: Usage, event: Obj): void {
  const usage = obj(event.usageMetadata);
  if (!usage) return;
  set(u, 'input_tokens', num(usage.promptTokenCount));
  const candidates = num(usage.candidatesTokenCount);
  const thoughts = num(usage.thoughtsTokenCount);
  // Gemini bills thinking tokens as output but reports them apart from candidates.
  set(
    u,
    'output_tokens',
    candidates === undefined && thoughts === undefined ? undefined : (candidates ?? 0) + (thoughts ?? 0),
  );
  set(u, 'reasoning_tokens', thoughts);
  set(u, 'total_tokens', num(usage.totalTokenCount));
  set(u, 'cache_read_input_tokens', num(usage.cachedContentTokenCount));
}

function bedrock(u: Usage, event: Obj): void {
  // The last event of an invoked model's stream: Bedrock's own count, final.
  const metrics = obj(event['amazon-bedrock-invocationMetrics']);
  if (metrics) {
    set(u, 'input_tokens', num(metrics.inputTokenCount));
    set(u, 'output_tokens', num(metrics.outputTokenCount));
    set(u, 'cache_read_input_tokens', num(metrics.cacheReadInputTokenCount));
    set(u, 'cache_creation_input_tokens', num(metrics.cacheWriteInputTokenCount));
    return;
  }
  const usage = obj(event.usage);
  if (usage && (usage.inputTokens !== undefined || usage.outputTokens !== undefined)) {
    // Converse, and ConverseStream's metadata event.
    set(u, 'input_tokens', num(usage.inputTokens));
    set(u, 'output_tokens', num(usage.outputTokens));
    set(u, 'total_tokens', num(usage.totalTokens));
    set(u, 'cache_read_input_tokens', num(usage.cacheReadInputTokens));
    set(u, 'cache_creation_input_tokens', num(usage.cacheWriteInputTokens));
    return;
  }
  // Invoked models answer in their own shape: Anthropic's (whole or streamed), Llama's counts.
  anthropic(u, event);
  set(u, 'input_tokens', num(event.prompt_token_count));
  set(u, 'output_tokens', num(event.generation_token_count));
}

const EXTRACTORS: Record<UsageFormat, (u: Usage, event: Obj) => void> = { openai, anthropic, gemini, bedrock };

export function applyUsage(format: UsageFormat, u: Usage, event: unknown): void {
  if (Array.isArray(event)) {
    for (const e of event) applyUsage(format, u, e);
    return;
  }
  const o = obj(event);
  if (o) EXTRACTORS[format](u, o);
}

/**
 * Fill total_tokens when the provider did not (Anthropic never does). Anthropic's (and
 * Bedrock's) input_tokens excludes cached input, so its cache reads and writes are added.
 */
export function finishUsage(format: UsageFormat, u: Usage): Usage | undefined {
  if (u.input_tokens === undefined && u.output_tokens === undefined && u.total_tokens === undefined) return undefined;
  if (u.total_tokens === undefined) {
    // Anthropic's and Bedrock's input counts leave cached input out.
    const cached =
      format === 'anthropic' || format === 'bedrock'
        ? (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0)
        : 0;
    u.total_tokens = (u.input_tokens ?? 0) + (u.output_tokens ?? 0) + cached;
  }
  return u;
}
