/**
 * bench/hops.ts: `npm run bench -- --hops` splits each decision's latency into
 * hops from its records' timestamps. The hops must be taken between the right
 * pairs of stamps, and an event missing from a topic must not make up a hop.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hopLatencies, type SentAt } from '../../bench/hops.ts';

const sentAt = (entries: Record<keyof SentAt, Array<[string, number]>>): SentAt => ({
  raw: new Map(entries.raw),
  validated: new Map(entries.validated),
  scored: new Map(entries.scored),
  decided: new Map(entries.decided),
});

describe('bench hops', () => {
  it('takes each hop between its two stamps, and raw → read for the pipeline', () => {
    const hops = hopLatencies(
      [{ id: 'e1', occurredAt: 1_000, readAt: 1_100 }],
      sentAt({ raw: [['e1', 1_002]], validated: [['e1', 1_020]], scored: [['e1', 1_050]], decided: [['e1', 1_090]] }),
    );
    assert.deepEqual(hops, {
      raw: { p50: 2, p99: 2 },
      validated: { p50: 18, p99: 18 },
      scored: { p50: 30, p99: 30 },
      decided: { p50: 40, p99: 40 },
      readable: { p50: 10, p99: 10 },
      raw_to_decided: { p50: 98, p99: 98 },
    });
  });

  it('leaves an event out of the hops whose stamps it lacks, and out of nothing else', () => {
    const hops = hopLatencies(
      [
        { id: 'e1', occurredAt: 0, readAt: 100 },
        // Never seen on scored: no scored or decided hop for it.
        { id: 'e2', occurredAt: 0, readAt: 300 },
      ],
      sentAt({
        raw: [['e1', 10], ['e2', 20]],
        validated: [['e1', 30], ['e2', 60]],
        scored: [['e1', 50]],
        decided: [['e1', 80], ['e2', 290]],
      }),
    );
    assert.deepEqual(hops.validated, { p50: 20, p99: 40 });
    assert.deepEqual(hops.scored, { p50: 20, p99: 20 });
    assert.deepEqual(hops.decided, { p50: 30, p99: 30 });
    assert.deepEqual(hops.readable, { p50: 10, p99: 20 });
    assert.deepEqual(hops.raw_to_decided, { p50: 90, p99: 280 });
  });

  it('gives NaN for a hop no event has, rather than a made-up figure', () => {
    const hops = hopLatencies([{ id: 'e1', occurredAt: 0, readAt: 10 }], sentAt({ raw: [], validated: [], scored: [], decided: [] }));
    assert.ok(Number.isNaN(hops.raw.p50) && Number.isNaN(hops.raw_to_decided.p99));
  });
});
