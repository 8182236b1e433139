/**
 * The provider implementations by id. A provider that reuses a wire format is one file
 * plus one line here (and its name in config/schema.ts when it has key settings of its own).
 */
import { anthropic } from './anthropic.ts';
import { azure } from './azure.ts';
import { gemini } from './gemini.ts';
import { openai } from './openai.ts';
import type { Provider } from './provider.ts';
import { vertex } from './vertex.ts';

export const PROVIDERS: Readonly<Record<string, Provider>> = { openai, anthropic, azure, gemini, vertex };

export type { KeyReport, Provider } from './provider.ts';
