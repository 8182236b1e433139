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
  // Passthrough requests go straight from Bun's router to the flow (Bun.serve `routes`):
  // Elysia's router, context and response mapping give these routes nothing (raw bodies,
  // no hooks) and cost ~5 us of CPU per request (docs/performance.md). The Elysia routes
  // below stay for app.handle() and answer nothing on a live server.
  const routes: Record<string, (request: Request, server: Bun.Server<unknown>) => Response | Promise<Response>> = {};
  for (const endpoint of ENDPOINTS) {
    const direct = (request: Request, server: Bun.Server<unknown>): Response | Promise<Response> => {
      if (state.draining) return jsonError(503, 'shutting_down', 'the gateway is shutting down', { connection: 'close' });
      try {
        return handlePassthrough(endpoint, request, server, state).catch(internalError);
      } catch {
        return internalError();
      }
    };
    routes[endpoint.prefix] = direct;
    routes[`${endpoint.prefix}/*`] = direct;
  }
  const app = new Elysia({ name: 'skybridge', serve: { routes } as never });

  app.get('/health', () =>
    new Response(JSON.stringify({ status: state.draining ? 'draining' : 'ok', version: VERSION, inflight: state.inflight }), {
      status: state.draining ? 503 : 200,
      headers: { 'content-type': 'application/json' },
    }),
  );

  for (const endpoint of ENDPOINTS) {
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

function internalError(): Response {
  return jsonError(500, 'gateway_error', 'internal gateway error');
}
