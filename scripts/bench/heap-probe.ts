/**
 * Preloaded into a gateway by fault-burst.ts (`bun --preload scripts/bench/heap-probe.ts
 * src/main.ts ...`), never part of the gateway itself. On SIGUSR2: a full, synchronous
 * collection (Bun.gc(true), which also asks mimalloc to return what it can), then the
 * heap's figures and live cells by type written as JSON to $SKYBRIDGE_HEAP_PROBE.
 * With SKYBRIDGE_HEAP_SNAPSHOT=1, a V8-format heap snapshot is written beside it too.
 */
import { heapStats, memoryUsage } from 'bun:jsc';
import { renameSync, writeFileSync } from 'node:fs';

const out = process.env.SKYBRIDGE_HEAP_PROBE;
let n = 0;
if (out) {
  process.on('SIGUSR2', () => {
    Bun.gc(true);
    const h = heapStats();
    const m = memoryUsage();
    const snapshot = process.env.SKYBRIDGE_HEAP_SNAPSHOT === '1' ? `${out}.${++n}.heapsnapshot` : undefined;
    if (snapshot) writeFileSync(snapshot, Buffer.from(Bun.generateHeapSnapshot('v8', 'arraybuffer')));
    const report = {
      rss: m.current,
      mimallocCommit: m.currentCommit,
      heapSize: h.heapSize,
      heapCapacity: h.heapCapacity,
      extraMemorySize: h.extraMemorySize,
      objectCount: h.objectCount,
      protectedObjectCount: h.protectedObjectCount,
      objectTypeCounts: h.objectTypeCounts,
      protectedObjectTypeCounts: h.protectedObjectTypeCounts,
      signalListeners: Object.fromEntries(
        ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR2'].map((s) => [s, process.listenerCount(s)]),
      ),
      snapshot,
    };
    writeFileSync(`${out}.tmp`, JSON.stringify(report));
    renameSync(`${out}.tmp`, out);
  });
}
