/** Replaced at build time by scripts/build (--define); from source it is package.json's. */
declare const SKYBRIDGE_VERSION: string | undefined;

import pkg from '../../package.json' with { type: 'json' };

export const VERSION: string = typeof SKYBRIDGE_VERSION === 'string' ? SKYBRIDGE_VERSION : pkg.version;
