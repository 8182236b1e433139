/**
 * A minimal protobuf decoder for OTLP trace exports, written from the wire-format spec
 * (https://protobuf.dev/programming-guides/encoding/) independently of the gateway's
 * encoder, so the tests check its bytes against the format rather than against itself.
 * Returns the OTLP/JSON shape (hex ids, decimal nanosecond strings).
 */

interface Field {
  no: number;
  wire: number;
  /** varint value (bigint), fixed64 (bigint), fixed32 (number) or bytes. */
  value: bigint | number | Uint8Array;
}

function* fields(buf: Uint8Array): Generator<Field> {
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (at >= buf.length) throw new Error('truncated varint');
      const b = buf[at++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  };
  while (at < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield { no, wire, value: varint() };
    else if (wire === 1) {
      const v = new DataView(buf.buffer, buf.byteOffset + at, 8).getBigUint64(0, true);
      at += 8;
      yield { no, wire, value: v };
    } else if (wire === 2) {
      const n = Number(varint());
      if (at + n > buf.length) throw new Error(`field ${no}: length ${n} past the end`);
      yield { no, wire, value: buf.subarray(at, at + n) };
      at += n;
    } else if (wire === 5) {
      const v = new DataView(buf.buffer, buf.byteOffset + at, 4).getUint32(0, true);
      at += 4;
      yield { no, wire, value: v };
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

const text = (b: Field['value']) => new TextDecoder('utf-8', { fatal: true }).decode(b as Uint8Array);
const hex = (b: Field['value']) => Buffer.from(b as Uint8Array).toString('hex');

function anyValue(buf: Uint8Array): Record<string, unknown> {
  for (const f of fields(buf)) {
    if (f.no === 1) return { stringValue: text(f.value) };
    if (f.no === 2) return { boolValue: f.value === 1n };
    if (f.no === 3) return { intValue: BigInt.asIntN(64, f.value as bigint).toString() };
    if (f.no === 4)
      return { doubleValue: new DataView(new BigUint64Array([f.value as bigint]).buffer).getFloat64(0, true) };
  }
  return {};
}

function keyValue(buf: Uint8Array) {
  let key = '';
  let value: Record<string, unknown> = {};
  for (const f of fields(buf)) {
    if (f.no === 1) key = text(f.value);
    else if (f.no === 2) value = anyValue(f.value as Uint8Array);
  }
  return { key, value };
}

function span(buf: Uint8Array) {
  const s: Record<string, unknown> = { attributes: [] as unknown[] };
  for (const f of fields(buf)) {
    const b = f.value as Uint8Array;
    if (f.no === 1) s.traceId = hex(b);
    else if (f.no === 2) s.spanId = hex(b);
    else if (f.no === 4) s.parentSpanId = hex(b);
    else if (f.no === 5) s.name = text(b);
    else if (f.no === 6) s.kind = Number(f.value);
    else if (f.no === 7) s.startTimeUnixNano = String(f.value);
    else if (f.no === 8) s.endTimeUnixNano = String(f.value);
    else if (f.no === 9) (s.attributes as unknown[]).push(keyValue(b));
    else if (f.no === 15) {
      const status: Record<string, unknown> = { code: 0 };
      for (const g of fields(b)) {
        if (g.no === 2) status.message = text(g.value);
        else if (g.no === 3) status.code = Number(g.value);
      }
      s.status = status;
    }
  }
  return s;
}

/** ExportTraceServiceRequest bytes → the OTLP/JSON object shape. */
export function decodeTraceExport(buf: Uint8Array) {
  const resourceSpans: unknown[] = [];
  for (const rsField of fields(buf)) {
    if (rsField.no !== 1) continue;
    const rs = { resource: { attributes: [] as unknown[] }, scopeSpans: [] as unknown[] };
    for (const f of fields(rsField.value as Uint8Array)) {
      if (f.no === 1)
        for (const a of fields(f.value as Uint8Array))
          if (a.no === 1) rs.resource.attributes.push(keyValue(a.value as Uint8Array));
      if (f.no === 2) {
        const ss = { scope: {} as Record<string, string>, spans: [] as unknown[] };
        for (const g of fields(f.value as Uint8Array)) {
          if (g.no === 1)
            for (const h of fields(g.value as Uint8Array)) ss.scope[h.no === 1 ? 'name' : 'version'] = text(h.value);
          if (g.no === 2) ss.spans.push(span(g.value as Uint8Array));
        }
        rs.scopeSpans.push(ss);
      }
    }
    resourceSpans.push(rs);
  }
  return { resourceSpans };
}
