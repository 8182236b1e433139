/**
 * The HTTP server: one route per passthrough prefix (raw bodies, no parsing), /health,
 * and JSON errors for everything else. Plugins may add their own routes (/metrics).
 */
import { Elysia } from 'elysia';
import { type Endpoint, ENDPOINTS, handlePassthrough, type RawTarget } from '../proxy/flow.ts';
import { MAX_SEGMENTS } from '../proxy/path.ts';
import { VERSION } from '../lib/version.ts';
import { jsonError } from '../core/errors.ts';
import type { GatewayState } from '../core/runtime.ts';

export type RouteInstaller = (app: Elysia) => void;


type PassthroughServe = (endpoint: Endpoint, request: Request, server: Bun.Server<unknown> | null, raw: RawTarget) => Response | Promise<Response>;
type BunRoute = (request: Request, server: Bun.Server<unknown>) => Response | Promise<Response>;

/**
 * The passthrough prefixes as Bun routes, which match the raw request target (Elysia's
 * router sees `request.url`, already rewritten by the URL parser): `P/:s1` ...
 * `P/:s1/.../:s32`, so the handler gets the raw segments as parameters (path.ts,
 * sameSegments), and each of those followed by `/*`, which Bun matches when a trailing
 * "/", an empty segment or more segments follow: only a trailing "/" then passes. Served
 * by Bun's router, these routes skip Elysia's own routing, which is also cheaper per request.
 */
function rawTargetRoutes(endpoint: Endpoint, serve: PassthroughServe): Record<string, BunRoute> {
  const routes: Record<string, BunRoute> = {};
  const names: string[] = [];
  let pattern = endpoint.prefix;
  for (let depth = 0; depth <= MAX_SEGMENTS; depth++) {
    if (depth > 0) {
      names.push(`s${depth}`);
      pattern += `/:s${depth}`;
    }
    const exact: RawTarget = { names: [...names], trailingSlash: false };
    const more: RawTarget = { names: exact.names, trailingSlash: true };
    routes[pattern] = (request, server) => serve(endpoint, request, server, exact);
    routes[`${pattern}/*`] = (request, server) => serve(endpoint, request, server, more);
  }
  return routes;
}

export function createApp(state: GatewayState, extraRoutes: RouteInstaller[] = []): Elysia {
  const passthrough: PassthroughServe = (endpoint, request, server, raw) =>
    state.draining ? jsonError(503, 'shutting_down', 'the gateway is shutting down', { connection: 'close' }) : handlePassthrough(endpoint, request, server, state, raw);
  const routes = Object.assign({}, ...ENDPOINTS.map((e) => rawTargetRoutes(e, passthrough))) as Record<string, BunRoute>;
  // standardHostname: false. Elysia otherwise looks for the path from the 12th character
  // of the URL, assuming a host of 4+ characters: behind a Host of `llm` or `ai:80` (a
  // service name) every request was routed as the wrong path.
  const app = new Elysia({ name: 'skybridge', handler: { standardHostname: false }, serve: { routes } as object });

  app.get('/health', () =>
    new Response(JSON.stringify({ status: state.draining ? 'draining' : 'ok', version: VERSION, inflight: state.inflight }), {
      status: state.draining ? 503 : 200,
      headers: { 'content-type': 'application/json' },
    }),
  );

  for (const endpoint of ENDPOINTS) {
    // Reached only when the raw target missed the routes above while its rewrite by the
    // URL parser lies under the prefix (`/x/../openai_passthrough/...`): refused.
    const moved = ({ request, server }: { request: Request; server: Bun.Server<unknown> | null }) => passthrough(endpoint, request, server, 'moved');
    app.all(`${endpoint.prefix}/*`, moved, { parse: 'none' });
  }

  for (const install of extraRoutes) install(app);

  app.onError(({ code, error }) => {
    if (code === 'NOT_FOUND') return jsonError(404, 'not_found', 'no such route');
    if (code === 'PARSE' || code === 'VALIDATION') return jsonError(400, 'invalid_request', String((error as Error).message ?? error));
    return jsonError(500, 'gateway_error', 'internal gateway error');
  });
  return app;
}
