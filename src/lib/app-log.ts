/**
 * The application log (start, reloads, plugin faults): NDJSON on stderr, which systemd
 * sends to journald. Request lines go to the request log file instead (plugins/logging).
 */
import pino from 'pino';

export const appLog = pino(
  {
    base: { app: 'skybridge' },
    level: process.env.SKYBRIDGE_LOG_LEVEL ?? 'info',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  },
  pino.destination({ dest: 2, sync: true }),
);

export type AppLog = typeof appLog;

/** Apply the config's `logs.level`, unless SKYBRIDGE_LOG_LEVEL set this process's level. */
export function applyConfiguredLevel(level: string): void {
  if (process.env.SKYBRIDGE_LOG_LEVEL) return;
  if (appLog.level !== level) appLog.level = level;
}
