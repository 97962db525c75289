/** The review queue as a state machine over `<p>.review` and `<p>.review-state` (review/queue.ts): no broker. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { itemIdOf, ReviewQueue, type ReviewSource, type StateRecord } from '../../review/queue.ts';

const T0 = 1_767_225_600_000;
const MINUTE = 60_000;
const P = 'signup-risk-unit';

function source(eventId: string, options: { version?: number; decidedAt?: number } = {}): ReviewSource {
  return {
    key: `k-${eventId}`,
    kind: 'review',
    record: {
      event_id: eventId,
      pipeline: P,
      decision: 'review',
      decided_by: 'model',
      reasons: ['score_above_review_threshold'],
      score: 0.61,
      model_version: 'm1',
      policy_version: 'p1',
      decision_version: options.version ?? 1,
      occurred_at: T0 - MINUTE,
      decided_at: options.decidedAt ?? T0,
      payload: { user_id: 'u' },
    },
  };
}

const claim = (itemId: string, by: string, at: number, rid = `${by}-${at}`): StateRecord => ({ type: 'claim', item_id: itemId, rid, by, at, lease_ms: 10 * MINUTE });
const resolved = (itemId: string, by: string, at: number, rid = `r-${by}-${at}`): StateRecord => ({
  type: 'resolved',
  item_id: itemId,
  rid,
  outcome: 'human',
  by,
  at,
  decision: 'approve',
  reason: 'known customer',
  fields: {},
  decision_version: 2,
});

describe('review queue', () => {
  it('item ids are stable per pipeline and event, and URL-safe', () => {
    assert.equal(itemIdOf(P, 'e-1'), itemIdOf(P, 'e-1'));
    assert.notEqual(itemIdOf(P, 'e-1'), itemIdOf(P, 'e-2'));
    assert.notEqual(itemIdOf(P, 'e-1'), itemIdOf('other', 'e-1'));
    assert.match(itemIdOf(P, 'e/1?x=2'), /^[A-Za-z0-9_-]{22}$/);
  });

  it('shows an audit sample as kind audit, its kind not among the pipeline\'s own fields', () => {
    const queue = new ReviewQueue(P, { slaMs: 240 * MINUTE });
    const audit = source('e-audit');
    const id = queue.applyReview({ ...audit, kind: 'audit', record: { ...audit.record, decision: 'approve', kind: 'audit', queue: 'bug' } });
    const item = queue.item(id, T0)!;
    assert.deepEqual([item.kind, item.decision, item.fields], ['audit', 'approve', { queue: 'bug' }]);
  });

  it('the first claim in log order wins; a second reviewer loses until the lease runs out', () => {
    const queue = new ReviewQueue(P, { slaMs: 240 * MINUTE });
    const id = queue.applyReview(source('e-1'));
    assert.deepEqual(queue.applyState(claim(id, 'alice', T0)), { rid: `alice-${T0}`, type: 'claim', won: true });
    const lost = queue.applyState(claim(id, 'bob', T0 + MINUTE));
    assert.deepEqual(lost, { rid: `bob-${T0 + MINUTE}`, type: 'claim', won: false, heldBy: 'alice', status: 'open' });
    assert.equal(queue.item(id, T0 + 2 * MINUTE)?.claimed_by, 'alice');
    // alice renews her own claim
    assert.deepEqual(queue.applyState(claim(id, 'alice', T0 + 5 * MINUTE)), { rid: `alice-${T0 + 5 * MINUTE}`, type: 'claim', won: true });
    assert.equal(queue.item(id, T0 + 5 * MINUTE)?.claim_expires_at, T0 + 15 * MINUTE);
    // after the renewed lease runs out, bob's claim wins
    const won = queue.applyState(claim(id, 'bob', T0 + 16 * MINUTE));
    assert.ok(won.type === 'claim' && won.won);
    assert.equal(queue.item(id, T0 + 16 * MINUTE)?.claimed_by, 'bob');
    // a lapsed claim is not shown as held
    assert.equal(queue.item(id, T0 + 40 * MINUTE)?.claimed_by, null);
  });

  it('two instances applying the same log agree on every outcome', () => {
    const log: StateRecord[] = [];
    const a = new ReviewQueue(P, { slaMs: 240 * MINUTE });
    const id = a.applyReview(source('e-2'));
    log.push(claim(id, 'bob', T0 + 1), claim(id, 'alice', T0), claim(id, 'alice', T0 + 2), resolved(id, 'bob', T0 + 3), claim(id, 'carol', T0 + 4));
    const outcomesA = log.map((r) => a.applyState(r));
    const b = new ReviewQueue(P, { slaMs: 240 * MINUTE });
    // b reads the state before the review record (a restart reads both topics at once)
    const outcomesB = log.map((r) => b.applyState(r));
    b.applyReview(source('e-2'));
    assert.deepEqual(outcomesA, outcomesB);
    assert.deepEqual(
      outcomesA.map((o) => ('won' in o ? o.won : null)),
      [true, false, false, true, false],
    );
    assert.deepEqual(a.item(id, T0 + 10), b.item(id, T0 + 10));
    assert.equal(b.item(id, T0 + 10)?.status, 'resolved');
  });

  it('a resolution is final: a second one does not win, a claim after it loses, a release is refused', () => {
    const queue = new ReviewQueue(P, { slaMs: 240 * MINUTE });
    const id = queue.applyReview(source('e-3'));
    assert.ok('won' in queue.applyState(resolved(id, 'alice', T0)) && queue.item(id, T0)?.status === 'resolved');
    const second = queue.applyState(resolved(id, 'bob', T0 + 1));
    assert.deepEqual(second, { rid: `r-bob-${T0 + 1}`, type: 'resolved', won: false });
    assert.equal(queue.item(id, T0)?.resolution?.by, 'alice');
    const late = queue.applyState(claim(id, 'bob', T0 + 2));
    assert.deepEqual(late, { rid: `bob-${T0 + 2}`, type: 'claim', won: false, heldBy: null, status: 'resolved' });
    assert.deepEqual(queue.applyState({ type: 'release', item_id: id, rid: 'rel', by: 'alice', at: T0 + 3 }), { rid: 'rel', type: 'release', won: false });
  });

  it('a replayed review request refreshes an open item but never reopens a closed one', () => {
    const queue = new ReviewQueue(P, { slaMs: 240 * MINUTE });
    const id = queue.applyReview(source('e-4'));
    queue.applyReview(source('e-4', { version: 3 }));
    assert.equal(queue.item(id, T0)?.decision_version, 3);
    queue.applyState(resolved(id, 'alice', T0));
    queue.applyReview(source('e-4', { version: 5 }));
    assert.equal(queue.item(id, T0)?.decision_version, 3);
    assert.equal(queue.item(id, T0)?.status, 'resolved');
  });

  it('lists by status, soonest due first, and finds overdue items', () => {
    const queue = new ReviewQueue(P, { slaMs: 10 * MINUTE });
    const late = queue.applyReview(source('late', { decidedAt: T0 + 5 * MINUTE }));
    const early = queue.applyReview(source('early', { decidedAt: T0 }));
    const done = queue.applyReview(source('done', { decidedAt: T0 - MINUTE }));
    queue.applyState(resolved(done, 'alice', T0));
    assert.deepEqual(queue.list('open', T0).map((i) => i.item_id), [early, late]);
    assert.deepEqual(queue.list('resolved', T0).map((i) => i.event_id), ['done']);
    assert.equal(queue.list('all', T0).length, 3);
    assert.equal(queue.item(early, T0)?.due_at, T0 + 10 * MINUTE);
    assert.deepEqual(queue.overdue(T0 + 10 * MINUTE), [early]);
    assert.deepEqual(queue.counts(), { open: 2, resolved: 1, expired: 0, superseded: 0 });
  });

  it("closes an open item when a replay's re-decision supersedes it, and never a resolved or a newer one", () => {
    const queue = new ReviewQueue(P, { slaMs: 10 * MINUTE });
    const open = queue.applyReview(source('e-open'));
    const done = queue.applyReview(source('e-done'));
    const newer = queue.applyReview(source('e-newer', { version: 3 }));
    queue.applyState(claim(open, 'ana', T0));
    queue.applyState(resolved(done, 'ana', T0));
    const superseding = (eventId: string, version: number) => ({ ...source(eventId).record, decision: 'approve', decision_version: version, replay_id: 'replay-1', kind: 'superseded' });
    assert.equal(queue.applySuperseded(superseding('e-open', 2)), open);
    queue.applySuperseded(superseding('e-done', 2));
    queue.applySuperseded(superseding('e-newer', 2));
    queue.applySuperseded(superseding('e-unknown', 2));

    const item = queue.item(open, T0)!;
    assert.deepEqual([item.status, item.claimed_by, item.superseded_by], ['superseded', null, { replay_id: 'replay-1', decision: 'approve', decision_version: 2 }]);
    assert.equal(queue.item(done, T0)!.status, 'resolved', 'a resolution stands');
    assert.equal(queue.item(newer, T0)!.status, 'open', 'an older re-decision does not close a newer request');
    assert.equal(queue.item(itemIdOf(P, 'e-unknown'), T0), undefined, 'no item is made for an event nobody reviews');
    // Closed: no claim wins, it never expires, and it is counted apart.
    const refused = queue.applyState(claim(open, 'ben', T0 + MINUTE));
    assert.deepEqual(refused, { rid: `ben-${T0 + MINUTE}`, type: 'claim', won: false, heldBy: null, status: 'superseded' });
    assert.deepEqual(queue.overdue(T0 + 60 * MINUTE), [newer]);
    assert.deepEqual(queue.counts(), { open: 1, resolved: 1, expired: 0, superseded: 1 });
  });
});
