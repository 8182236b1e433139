import { appLog } from '../../lib/app-log.ts';

/** At most one warning per interval; the next one reports how many were held back. */
export class WarnLimiter {
  private last = -Infinity;
  private suppressed = 0;

  constructor(private readonly everyMs: number) {}

  warn(fields: Record<string, unknown>, message: string): void {
    const now = performance.now();
    if (now - this.last < this.everyMs) {
      this.suppressed++;
      return;
    }
    appLog.warn(this.suppressed > 0 ? { ...fields, suppressed: this.suppressed } : fields, message);
    this.last = now;
    this.suppressed = 0;
  }
}
