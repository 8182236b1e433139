/**
 * Appends JSON text as UTF-8 bytes to a growable buffer, allocating nothing per value
 * in the common case. Spans are written straight into the export batch this way:
 * building span objects (or strings) per request and serialising them later cost
 * ~35 us per request under load, mostly in the garbage collector (measured with
 * scripts/bench/ab.ts, see docs/observability.md).
 */

const encoder = new TextEncoder();

/** Pre-encode a constant fragment once, at module load. */
export const fragment = (text: string): Uint8Array => encoder.encode(text);

export class JsonWriter {
  buf: Uint8Array<ArrayBuffer>;
  len = 0;

  constructor(initialBytes: number) {
    this.buf = new Uint8Array(initialBytes);
  }

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + extra));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** A pre-encoded fragment. */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    const buf = this.buf;
    let at = this.len;
    // A byte loop beats TypedArray.set below ~16 bytes (measured under Bun 1.4).
    if (bytes.length < 16) for (let i = 0; i < bytes.length; i++) buf[at++] = bytes[i]!;
    else {
      buf.set(bytes, at);
      at += bytes.length;
    }
    this.len = at;
  }

  /** Text known to need no escaping and to be ASCII (hex ids, digits). */
  ascii(text: string): void {
    this.ensure(text.length);
    const buf = this.buf;
    let at = this.len;
    for (let i = 0; i < text.length; i++) buf[at++] = text.charCodeAt(i);
    this.len = at;
  }

  /** A non-negative safe integer as decimal digits. */
  digits(n: number): void {
    this.ensure(16);
    if (n < 0x80000000) {
      this.len = writeInt32(this.buf, this.len, n);
      return;
    }
    // Above 2^31, JSC's / and % work on doubles and are ~5x slower: write the value as
    // two int32 halves, the low one zero-padded to 8 digits.
    const high = Math.floor(n / 1e8);
    let low = n - high * 1e8;
    const buf = this.buf;
    const at = writeInt32(buf, this.len, high);
    for (let i = at + 7; i >= at; i--) {
      const q = (low / 10) | 0;
      buf[i] = 48 + low - q * 10;
      low = q;
    }
    this.len = at + 8;
  }

  /** Any string as a quoted JSON string. */
  string(text: string): void {
    const n = text.length;
    this.ensure(n + 2);
    const buf = this.buf;
    const start = this.len;
    let at = start;
    buf[at++] = 34; // "
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      // Printable ASCII other than " and \ is copied; anything else takes the slow path.
      if (c < 0x20 || c > 0x7e || c === 34 || c === 92) return this.escaped(text, start);
      buf[at++] = c;
    }
    buf[at++] = 34;
    this.len = at;
  }

  /** Escaping and UTF-8 by the engine: JSON.stringify escapes controls and lone surrogates. */
  private escaped(text: string, start: number): void {
    this.len = start;
    const json = JSON.stringify(text);
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    this.ensure(json.length * 3);
    this.len += encoder.encodeInto(json, this.buf.subarray(this.len)).written;
  }
}

/** Decimal digits of 0 <= n < 2^31 at `at`; returns the end. */
function writeInt32(buf: Uint8Array, at: number, n: number): number {
  let end = at + 1;
  for (let rest = (n / 10) | 0; rest > 0; rest = (rest / 10) | 0) end++;
  for (let i = end - 1, rest = n; i >= at; i--) {
    const q = (rest / 10) | 0;
    buf[i] = 48 + rest - q * 10;
    rest = q;
  }
  return end;
}
