/**
 * Event-loop lag probe, preloaded into a proxy by the bench (`bun --preload
 * scripts/bench/loop-lag.ts ...`, only for the `aborts` workload's lag rounds: a 1 ms
 * timer wakes the loop, which could itself hide a delay waiting for the next wake-up).
 * Every tick of a 1 ms interval records [clock, ms late]; SIGUSR2 writes the samples
 * since the last SIGUSR2 to $LOOP_LAG_FILE as JSON and starts again.
 */
import { renameSync, writeFileSync } from 'node:fs';

const file = process.env.LOOP_LAG_FILE;
if (file) {
  const clock = () => performance.timeOrigin + performance.now();
  let samples: Array<[number, number]> = [];
  let last = clock();
  setInterval(() => {
    const now = clock();
    samples.push([now, Math.max(0, now - last - 1)]);
    last = now;
  }, 1).unref();
  process.on('SIGUSR2', () => {
    writeFileSync(`${file}.tmp`, JSON.stringify(samples));
    renameSync(`${file}.tmp`, file);
    samples = [];
  });
}
