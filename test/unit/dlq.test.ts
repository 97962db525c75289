/** `sluice dlq inspect`'s window and the field a dead-letter message names. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { FIELD_PATTERN } from '../../cli/dlq.ts';
import { sinceMs } from '../../cli/when.ts';
import { isSluiceError } from '../../lib/errors.ts';

it('reads --since as a duration back from now or as an instant, and refuses anything else naming the forms', () => {
  const now = Date.UTC(2026, 11, 1, 12);
  assert.equal(sinceMs('90m', now), now - 90 * 60_000);
  assert.equal(sinceMs('24h', now), now - 86_400_000);
  assert.equal(sinceMs('7d', now), now - 7 * 86_400_000);
  assert.equal(sinceMs('2026-12-01T03:00:00Z', now), Date.UTC(2026, 11, 1, 3));
  assert.throws(() => sinceMs('yesterday', now), (error) => isSluiceError(error) && error.code === 'CONFIG_INVALID' && /90m, 24h, 7d/.test(error.message));
});

it('finds the field a validation message starts with, and none in a message about the whole value', () => {
  const field = (message: string) => new RegExp(FIELD_PATTERN).exec(message)?.[1] ?? '';
  assert.equal(field('payload.signups_from_ip_24h: expected an integer, got string'), 'payload.signups_from_ip_24h');
  assert.equal(field('payload.labels[3]: at most 64 characters'), 'payload.labels[3]');
  assert.equal(field('event_type: pipeline p expects "user_signed_up", got "x"'), 'event_type');
  assert.equal(field('value is a JSON number, not an object'), '');
  assert.equal(field('value is 262145 bytes; the limit is 262144 bytes'), '');
});
