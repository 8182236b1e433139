/**
 * An upstream answer's body read whole before it is relayed, for the few answers the
 * gateway must look inside (a 429 stating its wait in the body, URLs to rewrite): at most
 * `max` bytes, under the idle limit. The answer stays relayable whatever happens: a body
 * longer than `max`, or one that broke or went silent, is handed on as a stream of the
 * bytes already read followed by the rest (or by the same failure, which the relay then
 * reports as it would have).
 */
import { ReaderWatch, unwatchIdle, watchIdle } from './idle.ts';

export type Held =
  /** The whole body, as sent (still compressed when it was). */
  | { readonly bytes: Uint8Array<ArrayBuffer>; readonly stream?: undefined }
  /** Too long, broken or silent: the body to relay in its place. */
  | { readonly bytes?: undefined; readonly stream: ReadableStream<Uint8Array> };

export async function holdBody(body: ReadableStream<Uint8Array>, max: number, idleTimeoutMs: number): Promise<Held> {
  const reader = body.getReader();
  const watch = new ReaderWatch(idleTimeoutMs, reader);
  watchIdle(watch);
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (watch.fired) return { stream: replay(chunks, undefined, idleError()) };
      if (done) break;
      watch.lastActivity = performance.now();
      chunks.push(value);
      size += value.byteLength;
      if (size > max) return { stream: replay(chunks, reader, undefined) };
    }
  } catch (err) {
    return { stream: replay(chunks, undefined, watch.fired ? idleError() : err) };
  } finally {
    unwatchIdle(watch);
  }
  return {
    bytes: (chunks.length === 1
      ? chunks[0]
      : new Uint8Array(Bun.concatArrayBuffers(chunks))) as Uint8Array<ArrayBuffer>,
  };
}

/** Headers for a body of `length` bytes held whole: a declared length, not a chunked one. */
export function heldHeaders(upstream: Headers, length: number): Headers {
  const headers = new Headers(upstream);
  headers.delete('transfer-encoding');
  headers.set('content-length', String(length));
  return headers;
}

/** What Bun's fetch throws when its socket timer fires: the relay reports it as an idle stream. */
const idleError = () => new DOMException('the upstream body went silent', 'TimeoutError');

/** The chunks read, then the rest of `reader` (or `error`). */
function replay(
  chunks: Uint8Array[],
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined,
  error: unknown,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = chunks.shift();
        if (next) return controller.enqueue(next);
        if (!reader) return error === undefined ? controller.close() : controller.error(error);
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel: (reason) => reader?.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}
