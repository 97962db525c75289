/**
 * ticket-triage through the generic stages (validate → score → decide) with
 * the broker-free driver: the real plugin, model, policy and Avro contracts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { ticketTriage } from '../../pipelines/ticket-triage/index.ts';
import { type GeneratedTicketEvent, generateTicketEvents, malformedSamples } from '../../pipelines/ticket-triage/generator.ts';
import { CVE_IDENTIFIER, parseSecurityIndicators, phraseMatcher, SECURITY_INDICATORS_FILE } from '../../pipelines/ticket-triage/policy.ts';
import { CATEGORIES } from '../../pipelines/ticket-triage/types.ts';
import { PipelineDriver } from '../driver.ts';

type Row = Record<string, unknown>;
const START_MS = Date.UTC(2026, 10, 1);
const events = [...generateTicketEvents({ seed: 5, count: 300, startMs: START_MS, idPrefix: 'tt-e2e' })];
const raw = (list: GeneratedTicketEvent[]) => list.map((e) => ({ key: e.key, value: e.value }));
const phrases = phraseMatcher(parseSecurityIndicators(readFileSync(SECURITY_INDICATORS_FILE, 'utf8')));
const hasIndicator = (e: GeneratedTicketEvent) => {
  const texts = e.payload.ticket ? [e.payload.ticket.summary, e.payload.ticket.description ?? ''] : [e.payload.document!.text];
  return texts.some((text) => CVE_IDENTIFIER.test(text) || phrases.test(text));
};

describe('ticket-triage end to end, without a broker', () => {
  let driver: PipelineDriver;
  before(async () => {
    driver = await PipelineDriver.create('ticket-triage');
  });
  after(async () => {
    await driver?.close();
  });

  it('decides every generated event: routed or reviewed, to one of the five queues', async () => {
    const out = await driver.pipe(raw(events));
    assert.equal(out.dlq.length, 0);
    assert.equal(out.decided.length, events.length);
    const decided = out.decided.map((m) => m.value as Row);
    const byId = new Map(events.map((e) => [e.eventId, e]));
    let correct = 0;
    for (const d of decided) {
      const event = byId.get(d['event_id'] as string)!;
      assert.ok((CATEGORIES as readonly string[]).includes(d['queue'] as string));
      assert.match(d['priority'] as string, /^P[1-4]$/);
      assert.ok(['route', 'review'].includes(d['decision'] as string));
      assert.equal(d['pipeline'], 'ticket-triage');
      assert.match(d['policy_version'] as string, /^policy-[0-9a-f]{12}$/);
      if (hasIndicator(event)) {
        assert.deepEqual([d['decision'], d['decided_by'], d['queue'], d['priority']], ['route', 'rule', 'security', 'P1'], event.eventId);
      } else {
        assert.equal(d['decided_by'], 'model');
        if (d['decision'] === 'route') assert.equal(d['priority'], event.payload.ticket?.priority_hint ?? 'P3');
      }
      if (d['queue'] === event.category) correct++;
    }
    assert.ok(correct / decided.length > 0.85, `queue accuracy ${correct / decided.length}`);
    const reviews = decided.filter((d) => d['decision'] === 'review');
    // Beside the review items, a sample of automatic decisions as audit items.
    assert.equal(out.review.filter((m) => (m.value as Row)['kind'] !== 'audit').length, reviews.length);
    for (const message of out.review) assert.ok((message.value as Row)['payload'], 'a review carries the payload');
  });

  it('scores with every class probability and the monitored values, not the hashed vector', async () => {
    const out = await driver.pipe(raw(events.slice(0, 20)));
    for (const message of out.scored) {
      const scored = message.value as Row;
      assert.deepEqual(scored['class_names'], [...CATEGORIES]);
      const scores = scored['class_scores'] as number[];
      assert.ok(Math.abs(scores.reduce((a, b) => a + b, 0) - 1) < 1e-5);
      assert.equal(scored['score'], Math.max(...scores));
      assert.equal(scored['label'], CATEGORIES[scores.indexOf(Math.max(...scores))]);
      assert.deepEqual(scored['feature_names'], [...ticketTriage.model.monitoredNames]);
      assert.equal((scored['feature_values'] as number[]).length, ticketTriage.model.monitoredNames.length);
    }
  });

  it('dead-letters every malformed sample with its reason', async () => {
    const samples = malformedSamples({ maxMessageBytes: ticketTriage.maxMessageBytes, idPrefix: 'tt-e2e' });
    const out = await driver.pipe(samples.map((s) => ({ key: s.key, value: s.value })));
    assert.equal(out.decided.length, 0);
    const reasons = new Map(out.dlq.map((m) => [m.key, m.headers['dlq.reason']]));
    for (const sample of samples) assert.equal(reasons.get(sample.key), sample.reason, sample.name);
  });

  it('with the kill switch on, reviews by fallback in the bug queue, except what the security rule routes', async () => {
    driver.setKillSwitch(true);
    try {
      const out = await driver.pipe(raw(events.slice(0, 80)));
      for (const [i, message] of out.decided.entries()) {
        const d = message.value as Row;
        const expected = hasIndicator(events[i]!) ? ['route', 'rule', 'security'] : ['review', 'fallback', 'bug'];
        assert.deepEqual([d['decision'], d['decided_by'], d['queue']], expected, events[i]!.eventId);
      }
    } finally {
      driver.setKillSwitch(false);
    }
  });
});

describe('ticket-triage end to end with SLUICE_ROUTE_THRESHOLD=1', () => {
  it('sends everything the rule does not route to review', async () => {
    const driver = await PipelineDriver.create('ticket-triage', { env: { SLUICE_ROUTE_THRESHOLD: '1' } });
    try {
      const out = await driver.pipe(raw(events.slice(0, 60)));
      for (const message of out.decided) {
        const d = message.value as Row;
        // Only the rule, or a float32 probability that rounded to exactly 1, routes.
        assert.equal(d['decision'], d['decided_by'] === 'rule' || d['score'] === 1 ? 'route' : 'review');
      }
      assert.equal(out.review.filter((m) => (m.value as Row)['kind'] !== 'audit').length, out.decided.filter((m) => (m.value as Row)['decision'] === 'review').length);
    } finally {
      await driver.close();
    }
  });
});
