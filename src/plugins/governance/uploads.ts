/**
 * Upload sessions this gateway saw start, and the virtual key that started each. The
 * requests continuing a resumable upload name their session (Gemini's `upload_id`) and
 * may carry no credential at all (google-genai for Python sends none with its chunks):
 * the session id then stands for the key that started it, so `required: true` holds and
 * the upload counts to that key.
 *
 * In memory, per instance: at most `max` sessions (the least recently used go first),
 * each forgotten `ttlMs` after its last use. Entries are kept in the Map's order of last
 * use, so expired ones are always at its front.
 */

export interface UploadSession {
  /** The virtual key's name, or undefined when the upload was started without one. */
  readonly key: string | undefined;
}

/** Sessions kept at most (a few hundred bytes each). */
export const MAX_UPLOAD_SESSIONS = 50_000;
/** A session unused for this long is forgotten (Gemini's uploaded files themselves last 48 h). */
export const UPLOAD_SESSION_TTL_MS = 24 * 3600 * 1000;

interface Entry extends UploadSession {
  until: number;
}

export class UploadSessions {
  private readonly sessions = new Map<string, Entry>();

  constructor(
    private readonly max = MAX_UPLOAD_SESSIONS,
    private readonly ttlMs = UPLOAD_SESSION_TTL_MS,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  remember(id: string, key: string | undefined, now: number): void {
    this.sessions.delete(id);
    this.forgetExpired(now);
    if (this.sessions.size >= this.max) this.sessions.delete(this.sessions.keys().next().value!);
    this.sessions.set(id, { key, until: now + this.ttlMs });
  }

  /** The session, when known and not expired; a use extends it. */
  recall(id: string, now: number): UploadSession | undefined {
    const entry = this.sessions.get(id);
    if (!entry) return undefined;
    this.sessions.delete(id);
    if (entry.until <= now) return undefined;
    entry.until = now + this.ttlMs;
    this.sessions.set(id, entry);
    return entry;
  }

  private forgetExpired(now: number): void {
    for (const [id, entry] of this.sessions) {
      if (entry.until > now) return;
      this.sessions.delete(id);
    }
  }
}
