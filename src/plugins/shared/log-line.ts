/**
 * A request record as one NDJSON line, shared by the request log and the explorer (which
 * stores the same line): serialised once per record, bodies clipped and redacted.
 */
import type { RuntimeConfig } from '../../config/runtime.ts';
import type { RequestRecord } from '../../core/request.ts';
import { redactor } from './redact.ts';

const EMPTY_RETRIES = ',"retries":[]}';

const formats = new WeakMap<RuntimeConfig, LineFormat>();

/**
 * The line format of a config: one per config, shared by the plugins that write lines.
 * `worker`: the process id a worker of a group adds to its lines (`"worker":1234`).
 */
export function lineFormat(config: RuntimeConfig, worker?: number): LineFormat {
  let format = formats.get(config);
  if (!format || format.worker !== worker) formats.set(config, (format = new LineFormat(config, worker)));
  return format;
}

/** How a config says bodies are logged: clipped to content_max_bytes, secrets redacted. */
export class LineFormat {
  private readonly redact: (text: string) => string;
  private readonly contentMax: number;
  /** Members added after the record's own: the serving worker, in a group. */
  private readonly suffix: string;

  constructor(
    config: RuntimeConfig,
    readonly worker?: number,
  ) {
    this.redact = redactor(config);
    this.contentMax = config.source.logs.content_max_bytes;
    this.suffix = worker === undefined ? '' : `,"worker":${worker}`;
  }

  /**
   * The record's fields as JSON members, without the braces (the request log prefixes
   * `"log":"request"`), without an empty `retries`, bodies clipped and redacted. The last
   * record's fields are kept: the request log and the explorer serialise it once.
   */
  fields(record: Readonly<RequestRecord>): string {
    if (record === lastRecord && this === lastFormat) return lastFields;
    let fields: string | undefined;
    if (record.retries.length === 0 && record.request_body === undefined && record.response_body === undefined) {
      // The common case: the record as it is, less its empty `retries` (the last field), without copying it first.
      const json = JSON.stringify(record);
      if (json.endsWith(EMPTY_RETRIES)) fields = json.slice(1, -EMPTY_RETRIES.length) + this.suffix;
    }
    if (fields === undefined) {
      const { retries, request_body, response_body, ...line } = record;
      const out: Record<string, unknown> = line;
      if (retries.length > 0) out.retries = retries;
      if (request_body !== undefined) out.request_body = this.content(request_body);
      if (response_body !== undefined) out.response_body = this.content(response_body);
      fields = JSON.stringify(out).slice(1, -1) + this.suffix;
    }
    lastRecord = record;
    lastFormat = this;
    lastFields = fields;
    return fields;
  }

  private content(text: string): string {
    const clipped =
      text.length > this.contentMax
        ? `${text.slice(0, this.contentMax)}…[truncated ${text.length - this.contentMax} chars]`
        : text;
    return this.redact(clipped);
  }
}

let lastRecord: Readonly<RequestRecord> | undefined;
let lastFormat: LineFormat | undefined;
let lastFields = '';
