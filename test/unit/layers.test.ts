/**
 * The layering of the tree, read from the import statements of every source
 * file under lib, connectors, processors, the services (review, ingest,
 * monitor), pipelines and cli: lib < connectors < processors < services < cli;
 * a pipeline's folder stands on lib alone
 * and is reached only through pipelines/registry.ts; each third-party client
 * is imported by its one adapter, so swapping it touches one folder.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

const ROOT = join(import.meta.dirname, '..', '..');
const SCANNED = ['lib', 'connectors', 'processors', 'review', 'ingest', 'monitor', 'pipelines', 'cli'];

interface Import {
  /** The importing file, relative to the repository root (forward slashes). */
  file: string;
  line: number;
  specifier: string;
  /** For a relative specifier: the file it points at, relative to the repository root. */
  target?: string;
}

const toPosix = (path: string) => path.split('\\').join('/');

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(path);
    return entry.isFile() && entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Static `import … from`, `export … from` and side-effect imports, `import x = require(…)`, and `import('…')` with a literal. */
function importsOf(file: string, text: string): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Import[] = [];
  const add = (node: ts.Node, specifier: string) => {
    const target = specifier.startsWith('.') ? toPosix(relative(ROOT, resolve(ROOT, dirname(file), specifier))) : undefined;
    found.push({ file, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, specifier, ...(target !== undefined && { target }) });
  };
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node, node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      add(node, node.moduleReference.expression.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      add(node, node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/**
 * The layer a repository path belongs to: its top-level folder, except under
 * pipelines/, where registry.ts is `pipelines/registry` and each pipeline's
 * folder is `pipelines/<kind>`.
 */
function layerOf(path: string): string {
  const [top = '', second = ''] = path.split('/');
  if (top !== 'pipelines') return top;
  if (path === 'pipelines/registry.ts') return 'pipelines/registry';
  return `pipelines/${second.replace(/\.ts$/, '')}`;
}

const isPipelineKind = (layer: string) => layer.startsWith('pipelines/') && layer !== 'pipelines/registry';

/** The layers each layer may import (besides itself). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  lib: [],
  connectors: ['lib'],
  processors: ['lib', 'connectors'],
  // Services above the processors, serving every registered pipeline: the review
  // service; the ingest gateway (it checks envelopes as validate does); the monitor
  // (it follows the control topic as the stages do).
  review: ['lib', 'connectors', 'pipelines/registry'],
  ingest: ['lib', 'connectors', 'processors', 'pipelines/registry'],
  monitor: ['lib', 'connectors', 'processors', 'pipelines/registry'],
  // deploy/local is the local stack the CLI starts and stops; pipelines only through their registry.
  cli: ['lib', 'connectors', 'processors', 'review', 'ingest', 'monitor', 'pipelines/registry', 'deploy'],
};

function layerAllows(from: string, to: string): boolean {
  if (from === to) return true;
  if (from === 'pipelines/registry') return to === 'lib' || isPipelineKind(to);
  if (isPipelineKind(from)) return to === 'lib';
  return MAY_IMPORT[from]?.includes(to) ?? false;
}

/** Third-party clients and the one adapter folder that may import each. */
const ADAPTERS: ReadonlyArray<{ pkg: string; folder: string }> = [
  { pkg: 'kafkajs', folder: 'connectors/kafka/' },
  { pkg: 'onnxruntime-node', folder: 'connectors/onnx/' },
  { pkg: '@clickhouse/client', folder: 'connectors/clickhouse/' },
  { pkg: '@kafkajs/confluent-schema-registry', folder: 'connectors/registry/' },
  { pkg: 'avsc', folder: 'connectors/registry/' },
];

const describeImport = (i: Import) => `${i.file}:${i.line} imports '${i.specifier}'`;

function layerViolations(imports: readonly Import[]): string[] {
  return imports
    .filter((i) => i.target !== undefined && !layerAllows(layerOf(i.file), layerOf(i.target)))
    .map((i) => `${describeImport(i)} (${layerOf(i.file)} -> ${layerOf(i.target!)})`);
}

function pipelineByPathViolations(imports: readonly Import[]): string[] {
  return imports
    .filter((i) => !i.file.startsWith('pipelines/') && i.target !== undefined && isPipelineKind(layerOf(i.target)))
    .map((i) => `${describeImport(i)} (reach a pipeline through pipelines/registry.ts)`);
}

function adapterViolations(imports: readonly Import[]): string[] {
  return imports.flatMap((i) =>
    ADAPTERS.filter(({ pkg, folder }) => (i.specifier === pkg || i.specifier.startsWith(`${pkg}/`)) && !i.file.startsWith(folder)).map(
      ({ pkg, folder }) => `${describeImport(i)} (only ${folder} may import ${pkg})`,
    ),
  );
}

/** Strongly connected components of more than one layer (Tarjan), each with the imports along its edges. */
function layerCycles(imports: readonly Import[]): string[] {
  const edges = new Map<string, Map<string, Import>>();
  for (const i of imports) {
    if (i.target === undefined) continue;
    const from = layerOf(i.file);
    const to = layerOf(i.target);
    if (from === to) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from)!.has(to)) edges.get(from)!.set(to, i);
    if (!edges.has(to)) edges.set(to, new Map());
  }
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (node: string) => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node)!.keys()) {
      if (!index.has(next)) {
        connect(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const node of [...edges.keys()].sort()) if (!index.has(node)) connect(node);
  return components.map((component) => {
    const inside = component.flatMap((from) =>
      [...edges.get(from)!].filter(([to]) => component.includes(to)).map(([to, i]) => `    ${from} -> ${to}: ${describeImport(i)}`),
    );
    return `cycle between ${component.join(', ')}:\n${inside.join('\n')}`;
  });
}

const report = (violations: string[], rule: string) => `${violations.length} import(s) break the rule "${rule}":\n  ${violations.join('\n  ')}`;

const files = SCANNED.flatMap(sourceFiles).sort();
const imports = files.flatMap((file) => importsOf(file, readFileSync(join(ROOT, file), 'utf8')));
const byLayer = (predicate: (layer: string) => boolean) => imports.filter((i) => predicate(layerOf(i.file)));

describe('layers', () => {
  it('reads the imports of every source file of the five folders', () => {
    for (const folder of SCANNED) assert.ok(files.some((f) => f.startsWith(`${folder}/`)), `no .ts file found under ${folder}/`);
    assert.ok(
      imports.some((i) => i.file.startsWith('connectors/kafka/') && i.specifier === 'kafkajs'),
      'no import of kafkajs found under connectors/kafka/: the import reader is broken',
    );
    assert.ok(imports.some((i) => i.target?.startsWith('lib/')), 'no relative import resolved into lib/');
  });

  it('the checks catch what they are meant to catch', () => {
    const at = (file: string, specifier: string): Import => {
      const target = specifier.startsWith('.') ? toPosix(relative(ROOT, resolve(ROOT, dirname(file), specifier))) : undefined;
      return { file, line: 1, specifier, ...(target !== undefined && { target }) };
    };
    assert.equal(layerViolations([at('lib/x.ts', '../connectors/kafka/admin.ts')]).length, 1, 'lib importing connectors');
    assert.equal(layerViolations([at('connectors/kafka/x.ts', '../../processors/runtime/types.ts')]).length, 1, 'connectors importing processors');
    assert.equal(layerViolations([at('pipelines/a/x.ts', '../b/y.ts')]).length, 1, 'one pipeline importing another');
    assert.deepEqual(layerViolations([at('pipelines/registry.ts', './a/index.ts'), at('cli/x.ts', '../pipelines/registry.ts')]), []);
    assert.match(pipelineByPathViolations([at('cli/x.ts', '../pipelines/a/index.ts')])[0] ?? '', /cli\/x\.ts:1 imports '\.\.\/pipelines\/a\/index\.ts'/);
    assert.equal(adapterViolations([at('processors/x/y.ts', 'kafkajs'), at('connectors/kafka/y.ts', 'kafkajs')]).length, 1);
    assert.equal(adapterViolations([at('cli/x.ts', '@clickhouse/client/dist/x')]).length, 1, 'a subpath of the package counts');
    assert.match(layerCycles([at('lib/a.ts', '../connectors/b.ts'), at('connectors/b.ts', '../lib/a.ts')])[0] ?? '', /cycle between connectors, lib/);
  });

  it('lib imports nothing outside lib', () => {
    const violations = layerViolations(byLayer((l) => l === 'lib'));
    assert.deepEqual(violations, [], report(violations, 'lib imports only lib'));
  });

  it('connectors import only lib and connectors', () => {
    const violations = layerViolations(byLayer((l) => l === 'connectors'));
    assert.deepEqual(violations, [], report(violations, 'connectors import only lib and connectors'));
  });

  it('processors import only lib, connectors and processors', () => {
    const violations = layerViolations(byLayer((l) => l === 'processors'));
    assert.deepEqual(violations, [], report(violations, 'processors import only lib, connectors and processors'));
  });

  it('cli imports lib, connectors, processors, pipelines/registry.ts and deploy only', () => {
    const violations = layerViolations(byLayer((l) => l === 'cli'));
    assert.deepEqual(violations, [], report(violations, 'cli imports lib, connectors, processors, pipelines/registry.ts, deploy and cli'));
  });

  it('a pipeline folder imports only lib and its own folder; pipelines/registry.ts only lib and the pipeline folders', () => {
    const violations = layerViolations(byLayer((l) => l.startsWith('pipelines/')));
    assert.deepEqual(violations, [], report(violations, 'pipelines/<kind> imports lib and itself; pipelines/registry.ts imports lib and pipelines/<kind>'));
  });

  it('no layer cycle', () => {
    const cycles = layerCycles(imports);
    assert.deepEqual(cycles, [], `layers that import each other:\n${cycles.join('\n')}`);
  });

  it('nothing outside pipelines/ imports a pipeline folder by path', () => {
    const violations = pipelineByPathViolations(imports);
    assert.deepEqual(violations, [], report(violations, 'only pipelines/registry.ts reaches into pipelines/<kind>/'));
  });

  it('each third-party client is imported by its one adapter', () => {
    const violations = adapterViolations(imports);
    assert.deepEqual(violations, [], report(violations, 'kafkajs, onnxruntime-node, @clickhouse/client, the registry client and avsc stay in their connectors/ folder'));
  });
});
