// Preloaded by bunfig.toml for every test file.
import { setDefaultTimeout } from 'bun:test';

// Keep the app log (stderr) to warnings during tests.
process.env.SKYBRIDGE_LOG_LEVEL ??= 'warn';
// Tests start real servers and subprocesses; give slow shared CI machines room.
setDefaultTimeout(30_000);
