#!/usr/bin/env node
/**
 * Fills the stripped-JavaScript cache (lib/strip-cache.js) for every TypeScript
 * file of the project; run at install (postinstall). It never fails the
 * install: a file it cannot strip, or a Node without a stripper, only means
 * that processes strip on start as they would without the cache.
 */
try {
  const { fillStripCache } = await import('../lib/strip-cache.js');
  const startedAt = performance.now();
  const { files, written, removed, failed } = fillStripCache();
  process.stderr.write(
    `sluice: stripped-JavaScript cache: ${files} TypeScript files, ${written} stripped, ${removed} stale removed in ${Math.round(performance.now() - startedAt)} ms` +
      (failed.length > 0 ? `; left to Node at load: ${failed.join(', ')}` : '') +
      '\n',
  );
} catch (error) {
  process.stderr.write(`sluice: stripped-JavaScript cache not filled (${error instanceof Error ? error.message : String(error)}); processes strip types on start instead\n`);
}
