/**
 * The request body, read by one policy: small bodies are held whole (the model is read
 * from them, and they can be replayed on a retry; reading them is also cheaper than
 * streaming them through `fetch`), large ones stream through once, a declared or
 * counted size over server.max_request_body_mb is refused. A held body the client
 * compressed (gzip, deflate, br) is inflated, bounded, only to read its `model` and
 * `stream`; the compressed bytes are what is forwarded, so compression cannot hide a
 * model from key choice or a virtual key's list.
 */
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import type { RuntimeConfig } from '../config/runtime.ts';
import { GatewayError } from '../core/errors.ts';
import type { RequestRecord, RootMembers } from '../core/request.ts';
import { contentCoding } from '../lib/content-coding.ts';
import { rootMembers } from './members.ts';

export type RequestBody =
  | { readonly kind: 'none' }
  /**
   * Held whole: `readable` is what the upstream will read (inflated when compressed; undefined
   * when it cannot be), `members` its root `model` and `stream` when it is a JSON object.
   */
  | {
      readonly kind: 'held';
      readonly bytes: Uint8Array<ArrayBuffer>;
      readonly readable: Uint8Array | undefined;
      readonly members: RootMembers | undefined;
    }
  /**
   * Streamed once (no retries); `length` is the declared one (sent upstream as it is), and
   * `overLimit()` turns true when a counted body passed the maximum mid-way.
   */
  | {
      readonly kind: 'streamed';
      readonly stream: ReadableStream<Uint8Array>;
      readonly length: number | undefined;
      overLimit(): boolean;
    }
  | { readonly kind: 'refused'; readonly refusal: GatewayError };

/**
 * `hold`: small bodies are read whole, large ones stream (the default). `stream`: the body
 * streams through whatever its size, never read: the file bytes of an upload session.
 */
export type BodyPolicy = 'hold' | 'stream';

const NONE: RequestBody = { kind: 'none' };
const BODYLESS = new Set(['GET', 'HEAD']);
const never = () => false;

export async function readBody(
  request: Request,
  config: RuntimeConfig,
  record: RequestRecord,
  policy: BodyPolicy = 'hold',
): Promise<RequestBody> {
  const lengthHeader = request.headers.get('content-length');
  const length = lengthHeader === null ? undefined : Number(lengthHeader);
  // A declared length > 0 means a body: `request.body` is not touched then, as creating
  // that stream makes the whole-body read that follows slower.
  if (BODYLESS.has(request.method) || ((length ?? 0) <= 0 && request.body === null)) return NONE;
  if (length !== undefined && length > config.maxBodyBytes) return tooLarge(config, length);
  if (length !== undefined && (length > config.bufferBodyBytes || policy === 'stream')) {
    record.bytes_in = length;
    return { kind: 'streamed', stream: request.body!, length, overLimit: never };
  }
  if (policy === 'stream') {
    const counted = new CountedBody(request.body!.getReader(), [], config.maxBodyBytes, record);
    return { kind: 'streamed', stream: counted.stream, length: undefined, overLimit: () => counted.exceeded };
  }
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    if (length !== undefined) bytes = new Uint8Array(await request.arrayBuffer());
    else {
      // Chunked (no declared length): held like the others when it ends within the
      // buffer limit; else streamed once from there, counted against the maximum.
      const read = await readChunked(request.body!, config, record);
      if (!(read instanceof Uint8Array)) return read;
      bytes = read;
    }
  } catch {
    return { kind: 'refused', refusal: new GatewayError(400, 'invalid_body', 'the request body could not be read') };
  }
  record.bytes_in = bytes.byteLength;
  // Read for `model` whatever its declared type: a JSON object sent as text/plain may
  // well be parsed upstream, and its model must count here too.
  const readable =
    bytes.byteLength > 0 ? decodedBody(bytes, request.headers.get('content-encoding'), config.bufferBodyBytes) : bytes;
  const members = readable && readable.byteLength > 0 ? rootMembers(readable) : undefined;
  return { kind: 'held', bytes, readable, members };
}

function tooLarge(config: RuntimeConfig, length?: number): RequestBody {
  const size = length === undefined ? 'request body' : `request body of ${length} bytes`;
  return {
    kind: 'refused',
    refusal: new GatewayError(
      413,
      'payload_too_large',
      `${size} exceeds server.max_request_body_mb (${config.source.server.max_request_body_mb} MB)`,
    ),
  };
}

/**
 * A chunked body, read until it ends or passes the buffer limit: the whole body when it
 * ended within it; else a stream of what was read and then the rest, counted.
 */
async function readChunked(
  body: ReadableStream<Uint8Array>,
  config: RuntimeConfig,
  record: RequestRecord,
): Promise<Uint8Array<ArrayBuffer> | RequestBody> {
  const reader = body.getReader();
  const held: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    held.push(value);
    if (size > config.maxBodyBytes) {
      void reader.cancel().catch(() => {});
      return tooLarge(config);
    }
    if (size > config.bufferBodyBytes) {
      record.bytes_in = size;
      const counted = new CountedBody(reader, held, config.maxBodyBytes, record);
      return { kind: 'streamed', stream: counted.stream, length: undefined, overLimit: () => counted.exceeded };
    }
  }
  return new Uint8Array(Bun.concatArrayBuffers(held));
}

/** The rest of a large chunked body, after what was read: counted, failed once past the maximum. */
class CountedBody {
  exceeded = false;
  readonly stream: ReadableStream<Uint8Array>;

  constructor(reader: ReadableStreamDefaultReader<Uint8Array>, held: Uint8Array[], max: number, record: RequestRecord) {
    this.stream = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const first = held.shift();
        if (first) return controller.enqueue(first);
        const { done, value } = await reader.read();
        if (done) return controller.close();
        record.bytes_in += value.byteLength;
        if (record.bytes_in > max) {
          this.exceeded = true;
          controller.error(new Error('request body too large'));
          void reader.cancel().catch(() => {});
          return;
        }
        controller.enqueue(value);
      },
      cancel: (reason) => reader.cancel(reason),
    });
  }
}

/**
 * The body as the upstream will read it: `bytes` when not compressed, the inflated
 * bytes (at most `max`), or undefined when that cannot be done (an unsupported coding,
 * a corrupt stream, more than `max` once inflated).
 */
export function decodedBody(bytes: Uint8Array, contentEncoding: string | null, max: number): Uint8Array | undefined {
  const coding = contentCoding(contentEncoding);
  if (coding === null) return bytes;
  if (coding === 'unsupported') return undefined;
  const options = { maxOutputLength: Math.max(1, max) };
  try {
    return coding === 'gzip'
      ? gunzipSync(bytes, options)
      : coding === 'deflate'
        ? inflateSync(bytes, options)
        : brotliDecompressSync(bytes, options);
  } catch {
    return undefined;
  }
}
