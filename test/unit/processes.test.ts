/**
 * How stage processes are started (cli/processes.ts): with V8's heap sized
 * for a stage, except where a raised duplicate-check bound could outgrow the cap.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { NODE_FLAGS, nodeFlags } from '../../cli/processes.ts';

/** The V8 heap limit, in MiB, of a Node started with `flags`. */
function heapLimitMb(flags: string[]): number {
  const run = spawnSync(process.execPath, [...flags, '-e', 'console.log(require("node:v8").getHeapStatistics().heap_size_limit)'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return Number(run.stdout) / 1_048_576;
}

describe('stage processes', () => {
  it('cap the old generation under 2 GiB by default, and leave it uncapped for a duplicate check raised past 5 million ids', () => {
    const capped = heapLimitMb(nodeFlags({}));
    assert.ok(capped < 2_048, `heap limit ${capped} MiB`);
    assert.ok(capped > 1_500, `heap limit ${capped} MiB leaves a stage too little margin`);
    assert.deepEqual(nodeFlags({ SLUICE_DEDUP_MAX_IDS: '500000' }), NODE_FLAGS);
    const raised = nodeFlags({ SLUICE_DEDUP_MAX_IDS: '20000000' });
    assert.ok(heapLimitMb(raised) > capped, 'a raised bound must get Node\'s default limit');
  });
});
