/**
 * The HTTP server: one route per passthrough prefix (raw bodies, no parsing), /health,
 * and JSON errors for everything else. Plugins may add their own routes (/metrics).
 */
import { Elysia } from 'elysia';
import { type Endpoint, ENDPOINTS, handlePassthrough } from '../passthrough/flow.ts';
import { splitPassthroughUrl } from '../passthrough/path.ts';
import { VERSION } from '../version.ts';
import { jsonError } from './errors.ts';
import type { GatewayState } from './state.ts';

export type RouteInstaller = (app: Elysia) => void;

export function createApp(state: GatewayState, extraRoutes: RouteInstaller[] = []): Elysia {
  // standardHostname: false. Elysia otherwise looks for the path from the 12th character
  // of the URL, assuming a host of 4+ characters: behind a Host of `llm` or `ai:80` (a
  // service name) every request was routed as the wrong path.
  const app = new Elysia({ name: 'skybridge', handler: { standardHostname: false } });

  app.get('/health', () =>
    new Response(JSON.stringify({ status: state.draining ? 'draining' : 'ok', version: VERSION, inflight: state.inflight }), {
      status: state.draining ? 503 : 200,
      headers: { 'content-type': 'application/json' },
    }),
  );

  const passthrough = (endpoint: Endpoint, request: Request, server: Bun.Server<unknown> | null) =>
    state.draining ? jsonError(503, 'shutting_down', 'the gateway is shutting down', { connection: 'close' }) : handlePassthrough(endpoint, request, server, state);
  for (const endpoint of ENDPOINTS) {
    // Elysia stays in front of the hot path too (the stack's choice): serving these routes
    // from Bun's router directly measured ~5 us of CPU less per request (docs/performance.md).
    const handler = ({ request, server }: { request: Request; server: Bun.Server<unknown> | null }) => passthrough(endpoint, request, server);
    app.all(endpoint.prefix, handler, { parse: 'none' });
    app.all(`${endpoint.prefix}/*`, handler, { parse: 'none' });
  }

  for (const install of extraRoutes) install(app);

  app.onError(({ code, error, request, server }) => {
    if (code === 'NOT_FOUND') {
      // A request naming no host (HTTP/1.0 without Host, or an empty Host, both allowed by
      // RFC 9112 §3.2) reaches us with the bare target as its URL, which Elysia's router
      // reads from the wrong offset (it expects scheme://host first). Routed here, off the
      // hot path; the flow itself handles a bare target.
      const endpoint = request.url.charCodeAt(0) === 47 ? ENDPOINTS.find((e) => splitPassthroughUrl(request.url, e.prefix) !== undefined) : undefined;
      if (endpoint) return passthrough(endpoint, request, server ?? null);
      return jsonError(404, 'not_found', 'no such route');
    }
    if (code === 'PARSE' || code === 'VALIDATION') return jsonError(400, 'invalid_request', String((error as Error).message ?? error));
    return jsonError(500, 'gateway_error', 'internal gateway error');
  });
  return app;
}
