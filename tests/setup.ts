// Preloaded by bunfig.toml: keep the app log (stderr) to warnings during tests.
process.env.SKYBRIDGE_LOG_LEVEL ??= 'warn';
