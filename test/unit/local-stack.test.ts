/**
 * The local stack's Kafka cluster id: `stack up` formats a fresh stack's
 * storage with it on the command line, so it must never read as an option.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kafkaClusterId } from '../../deploy/local/stack.ts';

describe('the local stack', () => {
  it('makes Kafka cluster ids of 16 bytes in base64url that never start with "-" (one random id in 64 would)', () => {
    const ids = Array.from({ length: 5_000 }, () => kafkaClusterId());
    for (const id of ids) {
      assert.match(id, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/, id);
      assert.equal(Buffer.from(id, 'base64url').length, 16, id);
    }
    assert.equal(new Set(ids).size, ids.length, 'every id is new');
  });
});
