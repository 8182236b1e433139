/**
 * Appends bytes to a growable buffer, allocating nothing per value in the common case:
 * the OTLP encoders (otlp-json.ts, otlp-proto.ts) write a whole export batch into one
 * reused buffer with it. Measured under wrk load, building span objects and serialising
 * them cost ~3x the CPU of writing the bytes directly (docs/observability.md).
 */

const encoder = new TextEncoder();

/** Pre-encode a constant fragment once, at module load. */
export const fragment = (text: string): Uint8Array => encoder.encode(text);

export class ByteWriter {
  buf: Uint8Array<ArrayBuffer>;
  len = 0;
  /** A position an encoder keeps while it writes (protobuf: where the open span starts). */
  mark = 0;

  constructor(initialBytes: number) {
    this.buf = new Uint8Array(initialBytes);
  }

  ensure(extra: number): void {
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

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }

  /** Text known to be ASCII and to need no escaping (hex ids). */
  ascii(text: string): void {
    this.ensure(text.length);
    const buf = this.buf;
    let at = this.len;
    for (let i = 0; i < text.length; i++) buf[at++] = text.charCodeAt(i);
    this.len = at;
  }

  /** Hex text (validated ids) as raw bytes. */
  hexBytes(hex: string): void {
    const n = hex.length >> 1;
    this.ensure(n);
    const buf = this.buf;
    let at = this.len;
    for (let i = 0; i < hex.length; i += 2)
      buf[at++] = (nibble(hex.charCodeAt(i)) << 4) | nibble(hex.charCodeAt(i + 1));
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
  jsonString(text: string): void {
    const n = text.length;
    this.ensure(n + 2);
    const buf = this.buf;
    const start = this.len;
    let at = start;
    buf[at++] = 34; // "
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      // Printable ASCII other than " and \ is copied; anything else takes the slow path.
      if (c < 0x20 || c > 0x7e || c === 34 || c === 92) {
        this.jsonEscaped(text, start);
        return;
      }
      buf[at++] = c;
    }
    buf[at++] = 34;
    this.len = at;
  }

  /** Escaping and UTF-8 by the engine: JSON.stringify escapes controls and lone surrogates. */
  private jsonEscaped(text: string, start: number): void {
    this.len = start;
    this.utf8(JSON.stringify(text));
  }

  /** Protobuf base-128 varint of a non-negative safe integer. */
  varint(n: number): void {
    this.ensure(8);
    const buf = this.buf;
    let at = this.len;
    while (n >= 0x80) {
      buf[at++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    buf[at++] = n;
    this.len = at;
  }

  /** Little-endian 32-bit unsigned integer (protobuf fixed32 / half of a fixed64). */
  uint32le(n: number): void {
    this.ensure(4);
    const buf = this.buf;
    const at = this.len;
    buf[at] = n & 0xff;
    buf[at + 1] = (n >>> 8) & 0xff;
    buf[at + 2] = (n >>> 16) & 0xff;
    buf[at + 3] = (n >>> 24) & 0xff;
    this.len = at + 4;
  }

  /** A protobuf string field's length and bytes (UTF-8; lone surrogates become U+FFFD). */
  lengthPrefixedUtf8(text: string): void {
    if (!isAscii(text)) {
      const bytes = encoder.encode(text);
      this.varint(bytes.length);
      this.raw(bytes);
      return;
    }
    this.varint(text.length);
    this.ascii(text);
  }

  /** UTF-8 of any string. */
  utf8(text: string): void {
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    this.ensure(text.length * 3);
    this.len += encoder.encodeInto(text, this.buf.subarray(this.len)).written;
  }
}

/** True when every UTF-16 unit is ASCII, so the text's length is its UTF-8 length. */
export function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** Bytes a varint of `n` takes. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

/** 0-9a-f (validated upstream) to its value. */
const nibble = (c: number): number => (c <= 57 ? c - 48 : c - 87);

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
