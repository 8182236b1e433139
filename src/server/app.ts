/**
 * The HTTP server: one route per passthrough prefix (raw bodies, no parsing), /health,
 * and JSON errors for everything else. Plugins may add their own routes (/metrics).
 */
import { Elysia } from 'elysia';
import { ENDPOINTS, handlePassthrough } from '../passthrough/flow.ts';
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

  for (const endpoint of ENDPOINTS) {
    // Elysia stays in front of the hot path too (the stack's choice): serving these routes
    // from Bun's router directly measured ~5 us of CPU less per request (docs/performance.md).
    const handler = ({ request, server }: { request: Request; server: Bun.Server<unknown> | null }) =>
      state.draining ? jsonError(503, 'shutting_down', 'the gateway is shutting down', { connection: 'close' }) : handlePassthrough(endpoint, request, server, state);
    app.all(endpoint.prefix, handler, { parse: 'none' });
    app.all(`${endpoint.prefix}/*`, handler, { parse: 'none' });
  }

  for (const install of extraRoutes) install(app);

  app.onError(({ code, error }) => {
    if (code === 'NOT_FOUND') return jsonError(404, 'not_found', 'no such route');
    if (code === 'PARSE' || code === 'VALIDATION') return jsonError(400, 'invalid_request', String((error as Error).message ?? error));
    return jsonError(500, 'gateway_error', 'internal gateway error');
  });
  return app;
}
