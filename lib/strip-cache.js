// @ts-check
/**
 * TypeScript without the type stripper in long-running processes.
 *
 * Node strips the types of every `.ts` module with amaro, swc compiled to
 * WebAssembly; once loaded it holds about 25 MB of resident memory for the
 * life of the process. A stage process strips the same ~60 unchanged files at
 * every start, so this module keeps the stripped JavaScript in a cache keyed by
 * a hash of the source (and the Node version, whose amaro makes the output) and
 * serves it through a synchronous in-thread module hook: a process whose
 * modules are all cached never loads amaro.
 *
 * Plain JavaScript on purpose: the hook must be loaded before any `.ts` file.
 * Modules keep their `file:` URLs and, in 'strip' mode, their line and column
 * positions (types become blanks), so `import.meta.url`, stack traces and
 * coverage are those of the source file.
 *
 * The cache is filled at install (`bin/fill-strip-cache.js`, postinstall) and
 * on a miss at run time (correct, only slower, and that process loads amaro).
 */
import { hash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { registerHooks, stripTypeScriptTypes } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Rebuilt by `npm install` with node_modules, so it never outlives the Node that wrote it for long. */
export const STRIP_CACHE_DIR = join(ROOT, 'node_modules', '.cache', 'sluice-strip');
/** Folders of the project that hold no module of its own. */
const SKIPPED_DIRS = new Set(['node_modules', '.git', '.sluice', '.venv', 'models']);

/**
 * The cache file name of a source: the Node version is part of the key, since
 * another Node may strip differently.
 * @param {string | Uint8Array} source
 */
export function cacheKey(source) {
  return `${hash('sha256', `${process.version}\0${typeof source === 'string' ? source : Buffer.from(source).toString('utf8')}`)}.js`;
}

/**
 * Strips the types as Node would ('strip' mode: positions kept, no source map).
 * Throws on syntax that needs a transform (enums, namespaces), as Node does.
 * @param {string} source
 */
export function strip(source) {
  // The public API announces itself as experimental on first use; Node's own
  // loader uses the same stripper silently. Keep stage logs free of it.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    return stripTypeScriptTypes(source, { mode: 'strip' });
  } finally {
    process.emitWarning = emitWarning;
  }
}

/**
 * Writes one entry atomically (another process may be reading or writing the same key).
 * @param {string} cacheDir
 * @param {string} key
 * @param {string} code
 */
function store(cacheDir, key, code) {
  mkdirSync(cacheDir, { recursive: true });
  const temporary = join(cacheDir, `${key}.${process.pid}.tmp`);
  writeFileSync(temporary, code);
  renameSync(temporary, join(cacheDir, key));
}

/**
 * Serves every project `.ts` ES module from the cache from now on, in this
 * thread. Files under node_modules are left to Node (which refuses them).
 * @param {{ cacheDir?: string }} [options]
 * @returns {{ hits: number, misses: number }} counts, live, for tests and diagnostics
 */
export function registerStripCache(options = {}) {
  const cacheDir = options.cacheDir ?? STRIP_CACHE_DIR;
  const counts = { hits: 0, misses: 0 };
  registerHooks({
    load(url, context, nextLoad) {
      const loaded = nextLoad(url, context);
      if (loaded.format !== 'module-typescript' || url.includes('/node_modules/') || loaded.source === undefined) return loaded;
      const source = typeof loaded.source === 'string' ? loaded.source : Buffer.from(loaded.source).toString('utf8');
      const key = cacheKey(source);
      let code;
      try {
        code = readFileSync(join(cacheDir, key), 'utf8');
        counts.hits++;
      } catch {
        try {
          code = strip(source);
        } catch {
          return loaded; // Node strips it again and reports the error its own way
        }
        counts.misses++;
        try {
          store(cacheDir, key, code);
        } catch {
          // a read-only tree: correct, only this process loads the stripper
        }
      }
      return { format: 'module', source: code, shortCircuit: true };
    },
  });
  return counts;
}

/**
 * Every `.ts` file of the project, skipping dependencies and local state.
 * @param {string} dir
 * @returns {string[]}
 */
function sourceFiles(dir) {
  const files = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) files.push(...sourceFiles(join(dir, entry.name)));
    } else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      files.push(join(dir, entry.name));
    }
  }
  return files;
}

/**
 * Strips every project `.ts` file into the cache and removes entries no file
 * has any more (older versions of edited files).
 * @param {{ root?: string, cacheDir?: string }} [options]
 * @returns {{ files: number, written: number, removed: number, failed: string[] }}
 */
export function fillStripCache(options = {}) {
  const root = options.root ?? ROOT;
  const cacheDir = options.cacheDir ?? STRIP_CACHE_DIR;
  mkdirSync(cacheDir, { recursive: true });
  const existing = new Set(readdirSync(cacheDir));
  const wanted = new Set();
  const result = { files: 0, written: 0, removed: 0, /** @type {string[]} */ failed: [] };
  for (const file of sourceFiles(root)) {
    result.files++;
    const source = readFileSync(file, 'utf8');
    const key = cacheKey(source);
    wanted.add(key);
    if (existing.has(key)) continue;
    try {
      store(cacheDir, key, strip(source));
      result.written++;
    } catch {
      result.failed.push(file); // Node reports it when the file is loaded
    }
  }
  for (const name of existing) {
    if (!wanted.has(name)) {
      rmSync(join(cacheDir, name), { force: true });
      result.removed++;
    }
  }
  return result;
}
