/**
 * The HTTP server: the passthrough routes (raw bodies, no parsing), /health, the plugins'
 * routes behind one on/off guard, and JSON errors for everything else.
 */
import { Elysia } from 'elysia';
import { jsonError } from '../core/errors.ts';
import type { PluginRoute } from '../core/plugin.ts';
import type { GatewayState } from '../core/runtime.ts';
import { VERSION } from '../lib/version.ts';
import { customPrefix, customRoute, GENERIC_PREFIX, genericRoute, ROUTES, type Route } from '../providers/routes.ts';
import { handle } from '../proxy/handle.ts';
import { MAX_SEGMENTS } from '../proxy/path.ts';
import type { RawTarget } from '../proxy/target.ts';

/** A plugin's route and the name of the plugin that must be in the pipeline for it to answer. */
export interface OwnedRoute {
  readonly plugin: string;
  readonly route: PluginRoute;
}

/** A passthrough answer; undefined once a WebSocket handshake was upgraded (proxy/realtime.ts). */
type Answer = Response | undefined | Promise<Response | undefined>;
type Passthrough = (route: Route, request: Request, server: Bun.Server<unknown> | null, raw: RawTarget) => Answer;
type BunRoute = (request: Request, server: Bun.Server<unknown>) => Answer;

/**
 * The passthrough prefixes as Bun routes, which match the raw request target (Elysia's
 * router sees `request.url`, already rewritten by the URL parser): `P/:s1` ...
 * `P/:s1/.../:s32`, so the handler gets the raw segments as parameters (proxy/path.ts,
 * sameSegments), and each of those followed by `/*`, which Bun matches when a trailing
 * "/", an empty segment or more segments follow: only a trailing "/" then passes.
 * Served by Bun's router, these routes skip Elysia's own routing.
 */
function rawTargetRoutes(
  prefix: string,
  routeOf: (request: Request) => Route | undefined,
  serve: Passthrough,
): Record<string, BunRoute> {
  const routes: Record<string, BunRoute> = {};
  const names: string[] = [];
  let pattern = prefix;
  for (let depth = 0; depth <= MAX_SEGMENTS; depth++) {
    if (depth > 0) {
      names.push(`s${depth}`);
      pattern += `/:s${depth}`;
    }
    const exact: RawTarget = { names: [...names], trailingSlash: false };
    const more: RawTarget = { names: exact.names, trailingSlash: true };
    routes[pattern] = (request, server) => servedBy(routeOf(request), request, server, exact, serve);
    routes[`${pattern}/*`] = (request, server) => servedBy(routeOf(request), request, server, more, serve);
  }
  return routes;
}

function servedBy(
  route: Route | undefined,
  request: Request,
  server: Bun.Server<unknown> | null,
  raw: RawTarget,
  serve: Passthrough,
): Answer {
  return route
    ? serve(route, request, server, raw)
    : jsonError(404, 'not_found', 'no provider of that name is configured (providers:)');
}

/** The generic route of a provider the config in force has; undefined for any other name. */
function configuredRoute(state: GatewayState, name: string | undefined): Route | undefined {
  return name !== undefined && Object.hasOwn(state.config.providers, name) ? genericRoute(name) : undefined;
}

/** The custom route of `/<name>_passthrough` while the config in force has that provider. */
function customRouteOf(state: GatewayState, name: string): Route | undefined {
  return Object.hasOwn(state.config.providers, name) ? customRoute(name) : undefined;
}

type ServeOptions = Parameters<Bun.Server<unknown>['reload']>[0];

/**
 * The passthrough routes Bun serves. Most are fixed; `/<name>_passthrough` of a provider
 * that is not built in comes from the config, while Bun's routes are handed over when
 * the server starts (Elysia's serve.routes). A reload that adds such a provider routes
 * its prefix with `server.reload()`, which replaces Bun's whole table: Elysia's adapter
 * builds that table inside `listen()` (its own routes compiled for Bun's router, then
 * serve.routes, then it reloads once when its modules are loaded) and exposes it
 * nowhere, so the options it last passed to `server.reload` are kept (`attach`) and
 * passed again with the routes added. A prefix whose provider a reload removed stays
 * routed and answers 404, as an unknown `/passthrough/<name>` does.
 */
export class PassthroughRoutes {
  /** What serve.routes holds. */
  readonly table: Record<string, BunRoute>;
  private readonly routed = new Set<string>();
  private server: Bun.Server<unknown> | undefined;
  private served: ServeOptions | undefined;
  private readonly passthrough: Passthrough;

  constructor(private readonly state: GatewayState) {
    this.passthrough = (route, request, server, raw) =>
      state.draining
        ? jsonError(503, 'shutting_down', 'the gateway is shutting down', { connection: 'close' })
        : handle(route, request, server, state, raw);
    this.table = Object.assign(
      {},
      ...ROUTES.map((r) => rawTargetRoutes(r.prefix, () => r, this.passthrough)),
      // `/passthrough/:provider/...`: the provider's name is the first raw segment.
      rawTargetRoutes(
        `${GENERIC_PREFIX}/:provider`,
        (request) => configuredRoute(state, (request as Request & { params: Record<string, string> }).params.provider),
        this.passthrough,
      ),
      this.customRoutes(state.config.customRoutes),
    );
  }

  /** Served for the requests Bun's router did not take (the `moved` refusals). */
  serve(route: Route | undefined, request: Request, server: Bun.Server<unknown> | null): Answer {
    return servedBy(route, request, server, 'moved', this.passthrough);
  }

  /**
   * The server accepting connections (another one after a certificate renewal:
   * http/listener.ts), whose `reload` calls (Elysia's) are watched from now on.
   */
  attach(server: Bun.Server<unknown>): void {
    this.server = server;
    const reload = server.reload.bind(server);
    server.reload = (options: ServeOptions) => {
      this.served = options;
      return reload(options);
    };
  }

  /**
   * Routes the prefixes of `names` not routed yet. Returns those added, and whether the
   * running server serves them (false: Elysia never handed over its routes; a restart does).
   */
  add(names: readonly string[]): { added: string[]; live: boolean } {
    const added = names.filter((name) => !this.routed.has(name));
    if (added.length === 0) return { added, live: true };
    const routes = this.customRoutes(added);
    Object.assign(this.table, routes);
    if (!this.server || !this.served) return { added, live: false };
    const served = this.served;
    this.server.reload({ ...served, routes: { ...(served.routes as object), ...routes } } as ServeOptions);
    return { added, live: true };
  }

  private customRoutes(names: readonly string[]): Record<string, BunRoute> {
    const routes: Record<string, BunRoute> = {};
    for (const name of names) {
      this.routed.add(name);
      Object.assign(
        routes,
        rawTargetRoutes(customPrefix(name), () => customRouteOf(this.state, name), this.passthrough),
      );
    }
    return routes;
  }
}

export interface AppOptions {
  /** Served over TLS (Elysia's fallback parser then reads the path at another offset). */
  secure?: boolean;
  /** The passthrough routes (the gateway keeps them, to route providers a reload adds). */
  passthroughRoutes?: PassthroughRoutes;
}

export function createApp(
  state: GatewayState,
  pluginRoutes: readonly OwnedRoute[] = [],
  options: AppOptions = {},
): Elysia {
  const passthroughRoutes = options.passthroughRoutes ?? new PassthroughRoutes(state);
  const routes = passthroughRoutes.table;
  // standardHostname: false. Elysia otherwise looks for the path from the 12th character
  // of the URL, assuming a host of 4+ characters: behind a Host of `llm` or `ai:80` (a
  // service name) every request was routed as the wrong path. Its other choice, the 8th
  // character, is inside `https://`: a TLS gateway (`secure`) takes the 12th, right for
  // hosts of 3+ characters. Only requests Bun's router did not match reach that parse
  // (its table has every route, Elysia's included): HEAD on a GET route, unknown paths.
  const app = new Elysia({
    name: 'skybridge',
    handler: { standardHostname: options.secure === true },
    serve: { routes } as object,
  });

  app.get(
    '/health',
    () =>
      new Response(
        JSON.stringify({ status: state.draining ? 'draining' : 'ok', version: VERSION, inflight: state.inflight }),
        {
          status: state.draining ? 503 : 200,
          headers: { 'content-type': 'application/json' },
        },
      ),
  );

  for (const route of ROUTES) {
    // Reached only when the raw target missed the routes above while its rewrite by the
    // URL parser lies under the prefix (`/x/../openai_passthrough/...`): refused. (Such a
    // rewrite into a custom prefix finds no route here: a 404, refused all the same.)
    app.all(`${route.prefix}/*`, ({ request, server }) => passthroughRoutes.serve(route, request, server), {
      parse: 'none',
    });
  }
  app.all(
    `${GENERIC_PREFIX}/:provider/*`,
    ({ request, server, params }) => passthroughRoutes.serve(configuredRoute(state, params.provider), request, server),
    { parse: 'none' },
  );

  for (const { plugin, route } of pluginRoutes) {
    app.get(route.path, ({ request, server, params }) => {
      // The one on/off guard: a plugin's routes answer while it is in the pipeline.
      if (!state.pipeline.has(plugin)) return jsonError(404, 'not_found', 'no such route');
      return route.handle({
        request,
        params: params as Record<string, string>,
        clientIp: server?.requestIP(request)?.address,
        keepOpen: () => server?.timeout(request, 0),
      });
    });
  }

  app.onError(({ code, error }) => {
    if (code === 'NOT_FOUND') return jsonError(404, 'not_found', 'no such route');
    if (code === 'PARSE' || code === 'VALIDATION')
      return jsonError(400, 'invalid_request', String((error as Error).message ?? error));
    return jsonError(500, 'gateway_error', 'internal gateway error');
  });
  return app;
}
