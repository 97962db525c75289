/**
 * How stage processes are started (cli/processes.ts): with V8's heap sized
 * for a stage, except where a raised duplicate-check bound could outgrow the cap,
 * and with glibc returning large freed blocks to the system.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MALLOC_MMAP_THRESHOLD, NODE_FLAGS, nodeFlags, spawnProcess } from '../../cli/processes.ts';

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

  it('start with glibc\'s mmap threshold fixed at 128 KiB unless the environment sets one', async () => {
    const script = join(mkdtempSync(join(tmpdir(), 'sluice-processes-')), 'report.js');
    writeFileSync(script, 'console.log(JSON.stringify({ msg: "stage running", threshold: process.env.MALLOC_MMAP_THRESHOLD_ }))');
    const thresholdOf = async (env: Record<string, string>) => {
      let threshold: string | undefined;
      const child = spawnProcess({ name: 'report', script, args: [], env });
      child.child.stdout!.on('data', (chunk: Buffer) => {
        threshold ??= (JSON.parse(chunk.toString()) as { threshold?: string }).threshold;
      });
      await child.running;
      assert.equal(await child.exited, 0);
      return threshold;
    };
    // Whatever the shell running the tests sets does not count here.
    const ambient = process.env['MALLOC_MMAP_THRESHOLD_'];
    delete process.env['MALLOC_MMAP_THRESHOLD_'];
    try {
      assert.equal(MALLOC_MMAP_THRESHOLD, '131072');
      assert.equal(await thresholdOf({}), '131072');
      assert.equal(await thresholdOf({ MALLOC_MMAP_THRESHOLD_: '1048576' }), '1048576');
    } finally {
      if (ambient !== undefined) process.env['MALLOC_MMAP_THRESHOLD_'] = ambient;
    }
  });
});
