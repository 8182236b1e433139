/** `server.workers` and `--workers`: more than this is a typo, not a machine. */
export const MAX_WORKERS = 1024;
/**
 * Set (to the worker's number) in the environment of the worker processes a primary
 * starts: the role is decided from it before anything else runs, so a worker never
 * starts workers of its own (the compiled binary runs the same entry point).
 */
export const WORKER_ENV = 'SKYBRIDGE_WORKER';
