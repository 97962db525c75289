/**
 * A stage process loads what it runs, and not what sluice never uses: every
 * module loaded stays in the process's heap for its life (its source, its
 * functions, its objects), and V8 lets the heap grow to about twice what it
 * holds between full collections, so code loaded for nothing raises each
 * stage's peak RSS. Two install-time patches keep dependencies from loading
 * what sluice has no use for: the schema registry client's JSON Schema (ajv)
 * and Protobuf (protobufjs) support, which now loads on first use
 * (patches/@kafkajs+confluent-schema-registry+4.1.0.patch), and zod's
 * translations of its messages into some sixty languages, which zod no longer
 * re-exports (patches/zod+4.6.7.patch; English stays, as zod's default).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { z } from 'zod';

const require = createRequire(import.meta.url);

/** Every module URL a fresh process loads while importing the CLI and the three stages' modules, as `sluice run` does. */
function modulesLoadedByStages(): string[] {
  const script = `
    import { registerHooks } from 'node:module';
    const loaded = [];
    registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
    const { STAGE_MODULES } = await import(${JSON.stringify(new URL('../../cli/pipeline.ts', import.meta.url).href)});
    for (const load of Object.values(STAGE_MODULES)) await load();
    process.stdout.write(JSON.stringify(loaded));
  `;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout) as string[];
}

describe('what a stage process loads', () => {
  it('holds no JSON Schema or Protobuf support and no translations of zod messages', () => {
    const loaded = modulesLoadedByStages();
    // The hook saw the process load its dependencies (so an empty list cannot pass).
    assert.ok(loaded.some((url) => url.includes('/node_modules/@kafkajs/confluent-schema-registry/dist/schemaTypeResolver.js')));
    assert.ok(loaded.some((url) => url.includes('/node_modules/zod/v4/locales/en.js')));
    assert.ok(loaded.some((url) => url.includes('/node_modules/onnxruntime-node/')));
    const unused = loaded.filter((url) => /\/node_modules\/(ajv|protobufjs|@protobufjs)\//.test(url) || /\/node_modules\/zod\/v4\/locales\/(?!en\.js$)/.test(url));
    assert.deepEqual(unused, []);
  });

  it('still reads JSON Schema and Protobuf schemas, loading their support when first asked', () => {
    const loaded = (name: string) => Object.keys(require.cache).some((path) => path.includes(`/node_modules/${name}/`));
    const { schemaFromConfluentSchema } = require('@kafkajs/confluent-schema-registry/dist/schemaTypeResolver.js');
    const { SchemaType } = require('@kafkajs/confluent-schema-registry');
    assert.deepEqual([loaded('ajv'), loaded('protobufjs')], [false, false]);
    const json = schemaFromConfluentSchema({ type: SchemaType.JSON, schema: '{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}' });
    assert.equal(json.fromBuffer(json.toBuffer({ n: 1 })).n, 1);
    assert.throws(() => json.toBuffer({ n: 'one' }), /invalid payload/);
    const proto = schemaFromConfluentSchema({ type: SchemaType.PROTOBUF, schema: 'syntax = "proto3"; message Count { int32 n = 1; }' });
    assert.equal(proto.fromBuffer(proto.toBuffer({ n: 7 })).n, 7);
    assert.deepEqual([loaded('ajv'), loaded('protobufjs')], [true, true]);
  });

  it("keeps zod's messages in English", () => {
    const result = z.object({ n: z.number() }).safeParse({ n: 'seven' });
    assert.equal(result.success, false);
    assert.equal(result.error?.issues[0]?.message, 'Invalid input: expected number, received string');
  });
});
