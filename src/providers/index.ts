/** Provider registry: one module per API family. */
import type { ProviderId } from '../config/schema.ts';
import { anthropic } from './anthropic.ts';
import { azure } from './azure.ts';
import { gemini } from './gemini.ts';
import { openai } from './openai.ts';
import type { Provider } from './types.ts';
import { vertex } from './vertex.ts';

export const PROVIDERS: Readonly<Record<ProviderId, Provider>> = { openai, anthropic, azure, gemini, vertex };
export { isVertexRequest } from './vertex.ts';
export * from './types.ts';
