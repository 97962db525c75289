/**
 * Audit sampling (processors/decide/audit.ts) and the per-pipeline review
 * settings (review/settings.ts): which automatic decisions become audit items,
 * that the choice is a function of the event id (a retry or a restart samples
 * the same events), and what the review service applies for each pipeline.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { ScoredRecord } from '../../lib/contracts.ts';
import { SluiceError } from '../../lib/errors.ts';
import type { PipelinePlugin, Policy } from '../../lib/pipeline.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { AUDIT_KIND, auditPosition, auditRateOf, auditSampled, DEFAULT_AUDIT_RATE } from '../../processors/decide/audit.ts';
import { type DecideContext, decide } from '../../processors/decide/transform.ts';
import { REVIEW_DEFAULTS } from '../../review/config.ts';
import { reviewSettingsOf } from '../../review/settings.ts';

/** Approves below 0.5 by model, reviews from 0.5, and blocks a listed user by rule. */
const policy: Policy<{ user: string }> = {
  version: 'unit-1',
  decide: ({ payload, score }) => {
    if (payload.user === 'listed') return { decision: 'block', decidedBy: 'rule', reasons: ['deny_list'] };
    if (score === null) return { decision: 'review', decidedBy: 'fallback', reasons: ['no_score'] };
    return score < 0.5 ? { decision: 'approve', decidedBy: 'model', reasons: ['low_risk'] } : { decision: 'review', decidedBy: 'model', reasons: ['uncertain'] };
  },
};

const scored = (eventId: string, score: number | null, user = 'u'): ScoredRecord<{ user: string }> => ({
  event_id: eventId,
  event_type: 'signup',
  occurred_at: 1_000,
  source: 'unit',
  payload: { user },
  score,
  label: null,
  class_names: [],
  class_scores: [],
  model_version: 'm-1',
  feature_names: [],
  feature_values: [],
  validated_at: 1_100,
  scored_at: 1_200,
});

const ctx = (auditRate: number | undefined): DecideContext<{ user: string }> => ({ pipeline: 'unit', policy, reviewDecision: 'review', killSwitchOn: false, auditRate, now: () => 2_000 });

const ids = Array.from({ length: 20_000 }, (_, i) => `evt-${i}`);

function reviewOutputs(eventId: string, score: number | null, rate: number | undefined, user?: string) {
  const outcome = decide(scored(eventId, score, user), ctx(rate));
  assert.equal(outcome.kind, 'emit');
  return outcome.kind === 'emit' ? outcome.outputs.filter((o) => o.to === 'review').map((o) => o.value) : [];
}

describe('audit sampling', () => {
  it('samples about the configured share of automatic decisions, the same events every time', () => {
    const sampled = ids.filter((id) => auditSampled({ event_id: id, decision: 'approve', decided_by: 'model' }, 'review', 0.01));
    assert.ok(sampled.length > 150 && sampled.length < 250, `1% of 20000 is about 200; sampled ${sampled.length}`);
    const again = ids.filter((id) => auditSampled({ event_id: id, decision: 'approve', decided_by: 'model' }, 'review', 0.01));
    assert.deepEqual(again, sampled, 'a retry or a restart samples exactly the same events');
    // A higher rate keeps every event a lower rate sampled (the position of an event is fixed).
    const wider = new Set(ids.filter((id) => auditSampled({ event_id: id, decision: 'approve', decided_by: 'model' }, 'review', 0.05)));
    assert.ok(sampled.every((id) => wider.has(id)));
  });

  it("places an event by the first 32 bits of SHA-256 over its id, so every version of sluice samples the same events", () => {
    for (const id of ['evt-1', 'signup-7-123', 'é-ünïcode-id']) {
      const expected = createHash('sha256').update(`sluice.audit\u0000${id}`, 'utf8').digest().readUInt32BE(0) / 2 ** 32;
      assert.equal(auditPosition(id), expected, id);
    }
  });

  it('samples only decisions made by the model or by rules, never the review decision, a fallback or a human decision', () => {
    const all = (decision: string, decidedBy: string) => ids.slice(0, 200).filter((id) => auditSampled({ event_id: id, decision, decided_by: decidedBy }, 'review', 1)).length;
    assert.deepEqual([all('approve', 'model'), all('block', 'rule'), all('review', 'model'), all('review', 'fallback'), all('approve', 'human'), all('approve', 'fallback')], [200, 200, 0, 0, 0, 0]);
    assert.equal(auditSampled({ event_id: 'x', decision: 'approve', decided_by: 'model' }, 'review', 0), false);
    assert.equal(auditSampled({ event_id: 'x', decision: 'approve', decided_by: 'model' }, 'review', undefined), false);
  });

  it('decide writes a sampled automatic decision to review as well, kind audit, and the decision itself unchanged', () => {
    const [audit, ...more] = reviewOutputs('e-1', 0.1, 1);
    assert.equal(more.length, 0);
    const decided = decide(scored('e-1', 0.1), ctx(1));
    assert.ok(decided.kind === 'emit');
    const decision = decided.outputs.find((o) => o.to === 'decided')!.value;
    assert.deepEqual(audit, { ...decision, payload: { user: 'u' }, kind: AUDIT_KIND });
    assert.equal(decision.decision, 'approve', 'the automatic decision stands');
    assert.equal(reviewOutputs('e-2', 0.1, 1, 'listed')[0]?.['kind'], AUDIT_KIND, 'a rule decision is audited too');
    // A review decision goes to review once, as a review item (kind left to its default, review).
    const review = reviewOutputs('e-3', 0.7, 1);
    assert.deepEqual([review.length, review[0]?.['kind']], [1, undefined]);
    assert.equal(reviewOutputs('e-4', null, 1).length, 1, 'a fallback to review is a review item, not an audit');
  });

  it('decide samples exactly the events auditSampled picks; without a rate (a replay) it samples none', () => {
    const audited = ids.slice(0, 5_000).filter((id) => reviewOutputs(id, 0.1, 0.02).length === 1);
    assert.deepEqual(audited, ids.slice(0, 5_000).filter((id) => auditSampled({ event_id: id, decision: 'approve', decided_by: 'model' }, 'review', 0.02)));
    assert.ok(audited.length > 0);
    assert.equal(ids.slice(0, 2_000).filter((id) => reviewOutputs(id, 0.1, undefined).length > 0).length, 0);
  });

  it("reads the rate from the pipeline's manifest, 1% by default, and refuses a rate that is not a share", () => {
    const base = pipelineByName('signup-risk').plugin;
    assert.equal(auditRateOf({ kind: 'x', review: undefined }), DEFAULT_AUDIT_RATE);
    assert.equal(auditRateOf({ kind: 'x', review: { auditRate: 0.25 } }), 0.25);
    assert.equal(auditRateOf(base), base.review?.auditRate ?? DEFAULT_AUDIT_RATE);
    for (const bad of [-0.1, 1.5, Number.NaN]) {
      assert.throws(() => auditRateOf({ kind: 'x', review: { auditRate: bad } }), (error: unknown) => error instanceof SluiceError && error.code === 'CONFIG_INVALID');
    }
  });
});

describe('review settings per pipeline', () => {
  const plugin = (review: PipelinePlugin['review']): PipelinePlugin => ({ ...pipelineByName('ticket-triage').plugin, review });

  it("applies the manifest's SLA, lease, fallback decision and audit rate, and the defaults without them", () => {
    assert.deepEqual(reviewSettingsOf(plugin(undefined)), {
      slaMs: REVIEW_DEFAULTS.slaSeconds * 1_000,
      auditRate: DEFAULT_AUDIT_RATE,
      fallbackDecision: 'review',
      leaseMs: REVIEW_DEFAULTS.leaseSeconds * 1_000,
    });
    assert.deepEqual(reviewSettingsOf(plugin({ slaSeconds: 60, leaseSeconds: 30, fallbackDecision: 'route', auditRate: 0.5 })), { slaMs: 60_000, auditRate: 0.5, fallbackDecision: 'route', leaseMs: 30_000 });
  });

  it('lets SLUICE_REVIEW_SLA_SECONDS and SLUICE_REVIEW_LEASE_SECONDS override every pipeline', () => {
    const settings = reviewSettingsOf(plugin({ slaSeconds: 7_200, leaseSeconds: 600 }), { slaMs: 3_000, leaseMs: 5_000 });
    assert.deepEqual([settings.slaMs, settings.leaseMs], [3_000, 5_000]);
  });

  it('refuses a fallback decision the pipeline does not make, or times that are not whole seconds', () => {
    const invalid = (error: unknown) => error instanceof SluiceError && error.code === 'CONFIG_INVALID';
    assert.throws(() => reviewSettingsOf(plugin({ fallbackDecision: 'approve' })), invalid);
    assert.throws(() => reviewSettingsOf(plugin({ slaSeconds: 0 })), invalid);
    assert.throws(() => reviewSettingsOf(plugin({ leaseSeconds: 1.5 })), invalid);
  });

  it("each registered pipeline's manifest is valid", () => {
    for (const name of ['signup-risk', 'ticket-triage']) assert.doesNotThrow(() => reviewSettingsOf(pipelineByName(name).plugin));
  });
});
