/**
 * The stripped-JavaScript cache in front of Node's type stripper
 * (lib/strip-cache.js): a process whose modules are cached runs them without
 * loading the stripper (amaro, about 25 MB resident for the life of a stage),
 * a changed file is served fresh, and a module behaves as it does under Node's
 * own stripping: same `import.meta.url`, same positions in stack traces, same
 * error for syntax that needs a transform.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { NODE_FLAGS, SLUICE_BIN } from '../../cli/processes.ts';
import { cacheKey, fillStripCache } from '../../lib/strip-cache.js';

const HOOK = pathToFileURL(join(import.meta.dirname, '..', '..', 'lib', 'strip-cache.js')).href;
const AMARO_LOADED = "process.moduleLoadList.some((name) => name.includes('amaro'))";

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `file` in a fresh Node, through the cache hook when `cacheDir` is given, else with Node's own stripping. */
function runModule(file: string, cacheDir?: string): Run {
  const entry = cacheDir
    ? `import { registerStripCache } from ${JSON.stringify(HOOK)}; registerStripCache({ cacheDir: ${JSON.stringify(cacheDir)} }); await import(${JSON.stringify(pathToFileURL(file).href)});`
    : `await import(${JSON.stringify(pathToFileURL(file).href)});`;
  return spawnSync(process.execPath, ['--input-type=module', '--eval', entry], { encoding: 'utf8' });
}

describe('stripped-JavaScript cache', () => {
  let dir = '';
  let cacheDir = '';
  let module = '';
  const moduleSource = (answer: number) =>
    [
      'interface Answer { value: number }',
      `const answer: Answer = { value: ${answer} };`,
      `console.log(JSON.stringify({ value: answer.value, url: import.meta.url, amaro: ${AMARO_LOADED} }));`,
      '',
    ].join('\n');
  const output = (run: Run) => {
    assert.equal(run.status, 0, run.stderr);
    return JSON.parse(run.stdout) as { value: number; url: string; amaro: boolean };
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-strip-'));
    cacheDir = join(dir, 'cache');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    module = join(dir, 'answer.ts');
    writeFileSync(module, moduleSource(42));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs a cached module without loading the type stripper, at its own file URL', () => {
    const filled = fillStripCache({ root: dir, cacheDir });
    assert.deepEqual({ files: filled.files, written: filled.written, failed: filled.failed }, { files: 1, written: 1, failed: [] });
    assert.deepEqual(output(runModule(module, cacheDir)), { value: 42, url: pathToFileURL(module).href, amaro: false });
    // The same module under Node's own stripping, for comparison: the stripper is loaded.
    assert.deepEqual(output(runModule(module)), { value: 42, url: pathToFileURL(module).href, amaro: true });
  });

  it('serves a changed file fresh, and caches it for the next start', () => {
    fillStripCache({ root: dir, cacheDir });
    writeFileSync(module, moduleSource(43));
    assert.ok(!existsSync(join(cacheDir, cacheKey(moduleSource(43)))), 'the new version is not cached yet');
    const first = output(runModule(module, cacheDir));
    assert.deepEqual({ value: first.value, amaro: first.amaro }, { value: 43, amaro: true }, 'a miss strips the new source');
    assert.ok(existsSync(join(cacheDir, cacheKey(moduleSource(43)))), 'the miss filled the cache');
    assert.deepEqual(output(runModule(module, cacheDir)), { value: 43, url: pathToFileURL(module).href, amaro: false });
  });

  it('keeps line and column positions: a stack trace points where it does under Node', () => {
    const thrower = join(dir, 'thrower.ts');
    writeFileSync(thrower, ['type Reason = string;', 'const reason: Reason = "boom";', 'export const x: number = 1; throw new Error(reason);', ''].join('\n'));
    fillStripCache({ root: dir, cacheDir });
    const cached = runModule(thrower, cacheDir);
    const plain = runModule(thrower);
    const at = `${pathToFileURL(thrower).href}:3:35`;
    assert.ok(plain.stderr.includes(at), plain.stderr);
    assert.ok(cached.stderr.includes(at), cached.stderr);
    rmSync(thrower);
  });

  it('leaves syntax that needs a transform to Node, which refuses it as it always does', () => {
    const enumFile = join(dir, 'enum.ts');
    writeFileSync(enumFile, 'enum Colour { Red }\nconsole.log(Colour.Red);\n');
    const filled = fillStripCache({ root: dir, cacheDir });
    assert.deepEqual(filled.failed, [enumFile]);
    const cached = runModule(enumFile, cacheDir);
    assert.notEqual(cached.status, 0);
    assert.match(cached.stderr, /ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX/);
    assert.match(runModule(enumFile).stderr, /ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX/);
    rmSync(enumFile);
  });

  it('drops the entries of sources that no longer exist', () => {
    fillStripCache({ root: dir, cacheDir });
    writeFileSync(module, moduleSource(44));
    const filled = fillStripCache({ root: dir, cacheDir });
    assert.equal(filled.written, 1);
    assert.ok(filled.removed >= 1);
    assert.deepEqual(readdirSync(cacheDir), [cacheKey(moduleSource(44))]);
  });

  it('starts the sluice command through the cache: same output as bin/sluice.ts, without the stripper once cached', () => {
    const probe = join(dir, 'probe.mjs');
    writeFileSync(probe, `process.on('exit', () => process.stderr.write(\`amaro=\${${AMARO_LOADED}}\\n\`));\n`);
    const sluice = (script: string) => spawnSync(process.execPath, [...NODE_FLAGS, '--import', probe, script, 'dlq', '--help'], { encoding: 'utf8' });
    const viaTs = sluice(SLUICE_BIN.replace(/\.js$/, '.ts'));
    sluice(SLUICE_BIN); // fills the cache for whatever changed since install
    const viaJs = sluice(SLUICE_BIN);
    assert.equal(viaJs.status, 0, viaJs.stderr);
    assert.equal(viaJs.stdout, viaTs.stdout);
    assert.match(viaTs.stderr, /amaro=true/);
    assert.match(viaJs.stderr, /amaro=false/);
  });
});
