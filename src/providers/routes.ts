/**
 * The passthrough routes, as data (Bifrost's PassthroughConfig has the same shape): each
 * prefix, the provider it serves, and, where one route serves two providers, how a
 * request says which (GenAI: Gemini, or Vertex when the request names a Vertex resource
 * or carries a Google OAuth token). Every provider, built in or configured, is also at
 * `/passthrough/<name>/...` (GENERIC_PREFIX), and one that is not built in (a preset or
 * a provider of your own) at `/<name>_passthrough/...` (customPrefix).
 */
import type { RootMembers } from '../core/request.ts';
import { isVertexRequest } from './vertex.ts';

export interface Route {
  /** Logged as `endpoint`. */
  readonly id: string;
  /** Matched at a segment boundary; the rest is the provider-native path. */
  readonly prefix: string;
  /** The provider's name under `providers:`. */
  readonly provider: string;
  /** Another provider for this request, when the request says so. */
  detect?(path: string, members: RootMembers | undefined, headers: Headers): string | undefined;
}

export const ROUTES: readonly Route[] = [
  { id: 'openai', prefix: '/openai_passthrough', provider: 'openai' },
  { id: 'anthropic', prefix: '/anthropic_passthrough', provider: 'anthropic' },
  { id: 'azure', prefix: '/azure_passthrough', provider: 'azure' },
  { id: 'bedrock', prefix: '/bedrock_passthrough', provider: 'bedrock' },
  {
    id: 'genai',
    prefix: '/genai_passthrough',
    provider: 'gemini',
    detect: (path, members, headers) =>
      isVertexRequest(path, members, headers.get('authorization')) ? 'vertex' : undefined,
  },
];

/** The generic router: `/passthrough/<provider name>/<provider-native path>`. */
export const GENERIC_PREFIX = '/passthrough';

/** The route of a provider of your own, or a preset: `/<name>_passthrough`, logged with its name as `endpoint`. */
export const customPrefix = (name: string): string => `/${name}_passthrough`;

const generic = new Map<string, Route>();
const custom = new Map<string, Route>();

/** The route of `/<name>_passthrough` (one object per name, kept). */
export function customRoute(name: string): Route {
  let route = custom.get(name);
  if (!route) custom.set(name, (route = { id: name, prefix: customPrefix(name), provider: name }));
  return route;
}

/** The route of `/passthrough/<name>` (one object per name, kept). */
export function genericRoute(name: string): Route {
  let route = generic.get(name);
  if (!route) generic.set(name, (route = { id: 'passthrough', prefix: `${GENERIC_PREFIX}/${name}`, provider: name }));
  return route;
}
