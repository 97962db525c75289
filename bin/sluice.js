#!/usr/bin/env -S node --max-semi-space-size=8 --max-old-space-size=2000
/**
 * The entry that long-running processes start through: TypeScript modules come
 * from the stripped-JavaScript cache (lib/strip-cache.js), so a stage process
 * does not keep the type stripper in memory. Everything else is bin/sluice.ts.
 */
import { registerStripCache } from '../lib/strip-cache.js';

registerStripCache();
await import('./sluice.ts');
