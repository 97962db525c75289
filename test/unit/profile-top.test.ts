/**
 * bench/profile-top.ts: the self-time table the performance work is judged by
 * (README, issue 13) must add up, group by function and file, and say where
 * the code comes from.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { categoryOf, summarize } from '../../bench/profile-top.ts';

const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 0 });

/** root → handler (sluice) → { encode (avsc), send (kafkajs) }, idle, GC; two `send` nodes (two call sites) to group. */
const profile = {
  startTime: 0,
  nodes: [
    { id: 1, callFrame: frame('(root)', ''), children: [2, 6, 7] },
    { id: 2, callFrame: frame('handle', 'file:///work/main/processors/runtime/stage.ts'), children: [3, 4, 5] },
    { id: 3, callFrame: frame('Tap.writeString', 'file:///work/main/node_modules/avsc/lib/utils.js') },
    { id: 4, callFrame: frame('send', 'file:///work/main/node_modules/kafkajs/src/network/connection.js') },
    { id: 5, callFrame: frame('send', 'file:///work/main/node_modules/kafkajs/src/network/connection.js') },
    { id: 6, callFrame: frame('(idle)', '') },
    { id: 7, callFrame: frame('(garbage collector)', '') },
  ],
  // 1 ms each: handle ×2, avsc ×3, kafkajs ×2 + 1, idle ×4, GC ×2
  samples: [2, 2, 3, 3, 3, 4, 4, 5, 6, 6, 6, 6, 7, 7],
  timeDeltas: new Array(14).fill(1_000),
};

describe('profile-top', () => {
  it('self time by function and file, idle left out of the CPU time', () => {
    const summary = summarize(profile);
    assert.equal(summary.idleMs, 4);
    assert.equal(summary.busyMs, 10);
    assert.deepEqual(summary.byCategory, { kafkajs: 3, avsc: 3, sluice: 2, node: 2, idle: 4, other: 0 });
    assert.deepEqual(
      summary.entries.map((e) => [e.functionName, e.category, e.selfMs]),
      [
        ['Tap.writeString', 'avsc', 3],
        ['send', 'kafkajs', 3],
        ['handle', 'sluice', 2],
        ['(garbage collector)', 'node', 2],
      ],
    );
    assert.equal(summary.entries[0]!.url, 'avsc/lib/utils.js', 'dependencies named from their package');
    assert.equal(summary.entries[2]!.url, 'processors/runtime/stage.ts', "sluice's files from the repository root");
  });

  it('inclusive time under a function, callers of a function, and a skipped start', () => {
    const summary = summarize(profile, { inclusive: ['handle'], callers: 'send' });
    assert.deepEqual(summary.inclusiveMs, { handle: 8 });
    assert.deepEqual(summary.callersMs, { 'handle (processors/runtime/stage.ts)': 3 });
    const late = summarize(profile, { skipMs: 5 });
    assert.equal(late.busyMs + late.idleMs, 9, 'the first five samples are start-up');
  });

  it('names the origin of a frame', () => {
    assert.equal(categoryOf(frame('x', 'node:internal/buffer')), 'node');
    assert.equal(categoryOf(frame('wasm-function[71]', 'wasm://wasm/00ad0bc6')), 'node', "node's TypeScript stripper");
    assert.equal(categoryOf(frame('x', 'file:///a/node_modules/prom-client/lib/counter.js')), 'other');
    assert.equal(categoryOf(frame('x', 'file:///a/lib/json.ts')), 'sluice');
  });
});
