/**
 * The request target: the provider-native path after the route's prefix, the query, and
 * whether the gateway may forward them (path.ts has the rules), and whether it is a
 * WebSocket handshake (realtime.ts serves those). Also the requests no provider API
 * serves: TRACE.
 */
import { GatewayError } from '../core/errors.ts';
import type { Route } from '../providers/routes.ts';
import { checkPassthroughPath, describeRawMismatch, type RawRoute, sameSegments, splitPassthroughUrl } from './path.ts';

/**
 * How the raw request target matched (http/app.ts): a raw-target route, whose segments
 * are the request's route parameters, or `moved`: only the URL parser's rewrite of the
 * target lies under the prefix (dot segments or backslashes moved it there).
 */
export type RawTarget = RawRoute | 'moved';

export type Target =
  | { readonly ok: true; readonly path: string; readonly query: string; readonly upgrade: boolean }
  | { readonly ok: false; readonly refusal: GatewayError };

const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

export function readTarget(route: Route, request: Request, raw: RawTarget): Target {
  const split = splitPassthroughUrl(request.url, route.prefix);
  if (!split) return invalid('dot segments in the request target move it out of this prefix');
  const check = checkPassthroughPath(split.path, split.query);
  if (!check.ok) return invalid(check.reason);
  if (raw === 'moved') return invalid('dot segments or backslashes in the request target move it into this prefix');
  const params = (request as Request & { params: Record<string, string> }).params;
  if (!sameSegments(params, raw, split.path)) return invalid(describeRawMismatch(params, raw));
  if (request.method === 'TRACE') {
    // TRACE only echoes the request, headers included: nothing a provider API serves.
    return {
      ok: false,
      refusal: new GatewayError(405, 'method_not_allowed', 'TRACE is not forwarded', { allow: ALLOWED_METHODS }),
    };
  }
  // A WebSocket handshake is always a GET (RFC 6455 §4.1). Forwarded as a plain GET, with
  // the hop-by-hop `upgrade` dropped, it would come back as a puzzling 4xx: realtime.ts
  // serves it, or refuses it on a path that is no WebSocket API.
  const upgrade = request.method === 'GET' && request.headers.get('upgrade')?.toLowerCase() === 'websocket';
  return { ok: true, path: split.path, query: split.query, upgrade };
}

const invalid = (reason: string): Target => ({
  ok: false,
  refusal: new GatewayError(400, 'invalid_path', `invalid passthrough path: ${reason}`),
});
