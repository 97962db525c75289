/**
 * The local stack's Kafka cluster id: `stack up` formats a fresh stack's
 * storage with it on the command line, so it must never read as an option.
 * And its broker's request threads, sized to the machine in the config template,
 * and its services' logs, set aside at start once large.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { brokerThreads, kafkaClusterId, rotateLog } from '../../deploy/local/stack.ts';

describe('the local stack', () => {
  it('makes Kafka cluster ids of 16 bytes in base64url that never start with "-" (one random id in 64 would)', () => {
    const ids = Array.from({ length: 5_000 }, () => kafkaClusterId());
    for (const id of ids) {
      assert.match(id, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/, id);
      assert.equal(Buffer.from(id, 'base64url').length, 16, id);
    }
    assert.equal(new Set(ids).size, ids.length, 'every id is new');
  });

  it("sizes the broker's request threads to the machine: 2 each on 1-2 cores, Kafka's defaults (8 I/O, 3 network) from 8 cores", () => {
    assert.deepEqual(brokerThreads(1), { IO_THREADS: 2, NETWORK_THREADS: 2 });
    assert.deepEqual(brokerThreads(2), { IO_THREADS: 2, NETWORK_THREADS: 2 });
    assert.deepEqual(brokerThreads(4), { IO_THREADS: 4, NETWORK_THREADS: 3 });
    assert.deepEqual(brokerThreads(64), { IO_THREADS: 8, NETWORK_THREADS: 3 });
    // Every placeholder of the broker's config template is one `stack up` fills.
    const template = readFileSync(new URL('../../deploy/local/kafka/server.properties', import.meta.url), 'utf8');
    const placeholders = new Set([...template.matchAll(/@([A-Z_]+)@/g)].map((match) => match[1]));
    assert.deepEqual([...placeholders].sort(), ['DATA_DIR', ...Object.keys(brokerThreads(2))].sort());
  });

  it("sets a service's log aside at start once it reaches the limit, replacing the one set aside before", () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-logs-'));
    try {
      const log = join(dir, 'kafka.log');
      assert.equal(rotateLog(log, 10), false, 'no log yet: nothing to do');
      writeFileSync(log, 'nine byte');
      assert.equal(rotateLog(log, 10), false);
      assert.equal(readFileSync(log, 'utf8'), 'nine byte');
      writeFileSync(log, 'first run!');
      writeFileSync(`${log}.1`, 'older');
      assert.equal(rotateLog(log, 10), true);
      assert.equal(readFileSync(`${log}.1`, 'utf8'), 'first run!');
      assert.throws(() => readFileSync(log), { code: 'ENOENT' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
