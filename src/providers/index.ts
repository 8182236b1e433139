/**
 * The provider implementations by id. A provider that reuses a wire format is one file
 * plus one line here (and its key section in config/schema.ts when it has one of its
 * own); an embedding program (or a test) may register one with `registerProvider`.
 */
import { anthropic } from './anthropic.ts';
import { azure } from './azure.ts';
import { bedrock } from './bedrock.ts';
import { gemini } from './gemini.ts';
import { openai } from './openai.ts';
import type { Provider } from './provider.ts';
import { vertex } from './vertex.ts';

export const PROVIDERS: Readonly<Record<string, Provider>> = { openai, anthropic, azure, gemini, vertex, bedrock };

/** Make an implementation available to configs (`providers.<name>.api: <id>`). */
export function registerProvider(provider: Provider): void {
  (PROVIDERS as Record<string, Provider>)[provider.id] = provider;
}

export type { KeyReport, Provider } from './provider.ts';
