// Preloaded by bunfig.toml for every test file. (A per-test timeout cannot be set here:
// setDefaultTimeout only reaches the first file, so slow tests pass their own.)

// Keep the app log (stderr) to warnings during tests.
process.env.SKYBRIDGE_LOG_LEVEL ??= 'warn';
