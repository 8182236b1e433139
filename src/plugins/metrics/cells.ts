/**
 * Counters and histograms whose hot path is a field update: prom-client hashes the label
 * set on every `inc`/`observe`, while a cell held by reference is a field increment. A
 * family is handed to prom-client's Registry as an ordinary metric object (`name`,
 * `type`, `get()`), so the scrape output is prom-client's own format.
 */

export interface CounterCell {
  readonly labels: Record<string, string>;
  value: number;
}

export class HistogramCell {
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) labels[names[i]!] = values[i]!;
  return labels;
}

/** A counter family in the shape prom-client's Registry reads (`name`, `type`, `get()`). */
export class CellCounter {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly cells = new Map<string, CounterCell>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  /** The cell for these label values (created once; callers keep the reference). */
  cell(...values: string[]): CounterCell {
    const key = values.join('\u0000');
    let c = this.cells.get(key);
    if (!c) {
      c = { labels: labelsOf(this.labelNames, values), value: 0 };
      this.cells.set(key, c);
    }
    return c;
  }

  async get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: [...this.cells.values()].map((c) => ({ labels: c.labels, value: c.value })),
    };
  }
}

export class CellHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly cells = new Map<string, HistogramCell>();
  private readonly le: string[];

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    this.le = [...bounds.map(String), '+Inf'];
  }

  cell(...values: string[]): HistogramCell {
    const key = values.join('\u0000');
    let c = this.cells.get(key);
    if (!c) {
      c = new HistogramCell(labelsOf(this.labelNames, values), this.bounds);
      this.cells.set(key, c);
    }
    return c;
  }

  async get() {
    const values: Array<{ metricName: string; labels: Record<string, string>; value: number }> = [];
    for (const c of this.cells.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.le.length; i++) {
        cumulative += c.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...c.labels, le: this.le[i]! }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels: c.labels, value: c.sum });
      values.push({ metricName: `${this.name}_count`, labels: c.labels, value: c.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** A counter whose values are read at scrape time from counts kept elsewhere. */
export class ReadCounter {
  readonly type = 'counter';

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => Array<{ labels: Record<string, string>; value: number }>,
    /** How a group of workers merges it: `sum` for counts each worker keeps, `max` for counts they all share. */
    readonly aggregator: 'sum' | 'max' = 'sum',
  ) {}

  async get() {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.read() };
  }
}
