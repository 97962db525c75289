import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { oncePerObject } from '../../lib/once.ts';

describe('oncePerObject', () => {
  it('derives once per object, by identity, and keeps each object its own value', () => {
    const calls: object[] = [];
    const sum = oncePerObject((list: readonly number[]) => {
      calls.push(list);
      return { total: list.reduce((a, b) => a + b, 0) };
    });
    const a = [1, 2, 3];
    const b = [1, 2, 3];
    const first = sum(a);
    assert.equal(first.total, 6);
    assert.equal(sum(a), first, 'the same object gets the value derived the first time');
    assert.notEqual(sum(b), first, 'an equal but distinct object gets its own');
    assert.deepEqual(calls, [a, b]);
  });
});
