/**
 * Hot reload trigger: watches the config file and calls `onChange` when its content
 * changed.
 *
 * `fs.watch` on the file itself goes silent after an editor's atomic save (write a temp
 * file, rename it over the old one: the watched inode is gone). So the *directories* are
 * watched and events are filtered by name:
 * - the config file's own directory, for its name (in-place writes, renames, delete +
 *   create);
 * - every symlink on the way to the real file, and the directory of the real file. A
 *   Kubernetes ConfigMap volume is `config.yaml -> ..data/config.yaml` with
 *   `..data -> ..2024_01_01_xx`; an update writes a new `..2024_...` directory and renames
 *   a new `..data` over the old one, so only `..data` changes in the watched directory.
 * The set of watched directories and names is worked out again after every change
 * (symlink targets move).
 *
 * Events are debounced (an editor's save is several events), then the file is read and
 * its SHA-256 compared with the last content seen: a touch, or a save without changes,
 * reloads nothing. Reloads never overlap: a change during a reload is checked after it.
 */
import { createHash } from 'node:crypto';
import { type FSWatcher, lstatSync, readFileSync, readlinkSync, realpathSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { RuntimeConfig } from '../../config/runtime.ts';
import { appLog } from '../../lib/app-log.ts';

export interface ConfigWatchOptions {
  /** Quiet time after the last event before the file is read. */
  debounceMs?: number;
  /** The content in force now (as loaded at start): a first event with the same content is no change. */
  initialText?: string;
  /** What the file is, for the app log (default: the config file). */
  what?: string;
}

const MAX_LINK_HOPS = 16;

export function contentHash(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Directory -> names in it whose change can change what `file` reads. */
export function watchTargets(file: string): Map<string, Set<string>> {
  const targets = new Map<string, Set<string>>();
  const add = (dir: string, name: string) => {
    let names = targets.get(dir);
    if (!names) targets.set(dir, (names = new Set()));
    names.add(name);
  };
  let path = resolve(file);
  for (let hop = 0; hop < MAX_LINK_HOPS; hop++) {
    const dir = dirname(path);
    // A symlinked directory on the way (Kubernetes `..data`): watch its name in its parent,
    // and the directory it points to now (one watch per real directory).
    try {
      if (lstatSync(dir).isSymbolicLink()) {
        add(dirname(dir), basename(dir));
        add(realpathSync(dir), basename(path));
      } else {
        add(dir, basename(path));
      }
    } catch {
      // The directory is being swapped: the next event recomputes the targets.
    }
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(path);
    } catch {
      break; // missing for now (delete + create, or mid-swap)
    }
    if (!st.isSymbolicLink()) break;
    path = resolve(dirname(path), readlinkSync(path));
  }
  try {
    const real = realpathSync(file);
    add(dirname(real), basename(real));
  } catch {
    // missing for now
  }
  return targets;
}

export class ConfigWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private targets = new Map<string, Set<string>>();
  private lastHash: string | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;
  private pending = false;
  private closed = false;
  private readonly debounceMs: number;

  constructor(
    readonly file: string,
    private readonly onChange: () => Promise<unknown> | unknown,
    options: ConfigWatchOptions = {},
  ) {
    this.file = resolve(file);
    this.debounceMs = options.debounceMs ?? 100;
    this.lastHash = options.initialText !== undefined ? contentHash(options.initialText) : this.readHash();
    this.rewatch();
    appLog.info(
      { file: this.file, directories: this.watchedDirectories },
      `watching the ${options.what ?? 'config file'} for changes`,
    );
  }

  /** Directories watched now (tests, diagnostics). */
  get watchedDirectories(): string[] {
    return [...this.watchers.keys()];
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  private readHash(): string | undefined {
    try {
      return contentHash(readFileSync(this.file));
    } catch {
      return undefined;
    }
  }

  /** Watch exactly the directories the current symlink chain needs. */
  private rewatch(): void {
    if (this.closed) return;
    this.targets = watchTargets(this.file);
    for (const [dir, w] of this.watchers) {
      if (!this.targets.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of this.targets.keys()) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => this.onEvent(dir, name));
        w.on('error', (err) => {
          appLog.warn({ dir, err: String(err) }, 'config watch error; watching again');
          w.close();
          this.watchers.delete(dir);
          this.schedule();
        });
        this.watchers.set(dir, w);
      } catch (err) {
        appLog.warn({ dir, err: String(err) }, 'cannot watch config directory');
      }
    }
  }

  private onEvent(dir: string, name: string | Buffer | null): void {
    if (this.closed) return;
    const names = this.targets.get(dir);
    // No name (some platforms): cannot filter, so check.
    if (name !== null && names && !names.has(String(name))) return;
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.check(), this.debounceMs);
  }

  private async check(): Promise<void> {
    if (this.closed) return;
    if (this.running) {
      this.pending = true;
      return;
    }
    this.running = (async () => {
      try {
        this.rewatch();
        const hash = this.readHash();
        // Missing (mid-replace): the event that brings it back will check again.
        if (hash === undefined || hash === this.lastHash) return;
        this.lastHash = hash;
        await this.onChange();
      } catch (err) {
        appLog.error({ err: String(err), file: this.file }, 'config reload failed');
      }
    })();
    await this.running;
    this.running = undefined;
    if (this.pending && !this.closed) {
      this.pending = false;
      this.schedule();
    }
  }
}

/**
 * server.tls's certificate and key files, watched like the config file: a renewal (the
 * files rewritten, or a symlink swapped) reloads the config, which reads them again.
 */
export class TlsFileWatch {
  private watchers: ConfigWatcher[] = [];
  private files: string | undefined;

  constructor(private readonly onChange: () => Promise<unknown> | unknown) {}

  /** Watch this config's files (nothing when it has no server.tls); the same files stay watched. */
  follow(config: RuntimeConfig): void {
    const tls = config.serverTls;
    const files = tls && `${tls.certFile}\n${tls.keyFile}`;
    if (files === this.files) return;
    this.close();
    this.files = files;
    if (!tls) return;
    for (const [file, text] of [
      [tls.certFile, tls.cert],
      [tls.keyFile, tls.key],
    ] as const) {
      this.watchers.push(new ConfigWatcher(file, this.onChange, { initialText: text, what: 'server.tls file' }));
    }
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    this.files = undefined;
  }
}
