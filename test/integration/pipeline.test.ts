/**
 * The signup-risk pipeline end to end, on the real stack: its three stages as
 * separate processes on an instance of their own (unique topics, subjects,
 * groups and control keys).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { framedEncoder } from '../../connectors/registry/registry.ts';
import { DISPOSABLE_DOMAINS, envelopeBytes, type GeneratedSignup, generateSignups, malformedSamples } from '../../pipelines/signup-risk/generator.ts';
import type { DecisionRecord, ReviewRecord } from '../../pipelines/signup-risk/types.ts';
import { producerEnvelopeSchema } from '../fixtures.ts';
import { sluiceSync as sluice, uniqueName } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

const MAX_MESSAGE_BYTES = 65_536;
const BLOCK_AT = 0.9;
const REVIEW_AT = 0.5;


/** A signup every risk signal points at, on the enterprise plan. */
function riskyEnterprise(eventId: string, now: number) {
  return {
    event_id: eventId,
    event_type: 'user_signed_up',
    occurred_at: new Date(now).toISOString(),
    source: 'partner-api',
    payload: {
      user_id: `${eventId}-user`,
      email: 'zx90871234@fresh-domain.io',
      country: 'us',
      ip_country: 'NG',
      signup_channel: 'api',
      plan: 'enterprise',
      email_domain_age_days: 1,
      signups_from_ip_24h: 60,
    },
  };
}

describe('signup-risk pipeline', () => {
  let instance: PipelineInstance;
  let decided: Collector<DecisionRecord>;
  let review: Collector<ReviewRecord>;
  let dlq: Collector<Buffer>;
  const prefix = uniqueName('evt');
  const started = Date.now();
  const valid: GeneratedSignup[] = [...generateSignups({ seed: 11, count: 400, startMs: started, spacingMs: 10, idPrefix: prefix })];
  const bad = malformedSamples({ maxMessageBytes: MAX_MESSAGE_BYTES, idPrefix: prefix });
  const unknownSchemaKey = `${prefix}-bad-unknown-schema`;
  const unknownSchemaValue = Buffer.from([0, 0x7f, 0xff, 0xff, 0x01, 0x02, 0x03]);
  const avroEventId = `${prefix}-avro`;
  const enterpriseId = `${prefix}-enterprise`;

  before(async () => {
    instance = await PipelineInstance.create('it-pipeline', { SLUICE_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES) });
    [decided, review, dlq] = await Promise.all([
      instance.collect<DecisionRecord>('decided'),
      instance.collect<ReviewRecord>('review'),
      instance.collect<Buffer>('dlq', 'bytes'),
    ]);
    await instance.start();

    // A producer that registered its own Avro schema for the raw envelope.
    const rawId = await instance.catalog.register(`${instance.topic('raw')}-value`, producerEnvelopeSchema('producer.app'));
    const avroValue = framedEncoder(rawId, (await instance.catalog.typeOf(rawId))!)({
      event_id: avroEventId,
      event_type: 'user_signed_up',
      occurred_at: started,
      source: 'avro-producer',
      payload: { user_id: 'avro-user', email: ' Avro.User@Example.COM ', country: 'de', signup_channel: 'web', plan: 'pro' },
    });

    // Bad data first: it must not hold up the good data behind it.
    await instance.produce([
      ...bad.map((sample) => ({ key: sample.key, value: sample.value })),
      { key: unknownSchemaKey, value: unknownSchemaValue },
      { key: avroEventId, value: avroValue },
      { key: enterpriseId, value: JSON.stringify(riskyEnterprise(enterpriseId, started)) },
      ...valid.map((event) => ({ key: event.key, value: envelopeBytes(event.envelope) })),
    ]);
    await decided.until(`${valid.length + 2} decisions`, (messages) => messages.length >= valid.length + 2, 120_000);
    await dlq.until(`${bad.length + 1} dead letters`, (messages) => messages.length >= bad.length + 1);
  });

  after(async () => {
    await instance?.stop();
  });

  it('gives every valid event exactly one decision carrying the contract fields, key preserved', () => {
    const byId = new Map<string, DecisionRecord[]>();
    for (const { value } of decided.messages) byId.set(value.event_id, [...(byId.get(value.event_id) ?? []), value]);
    for (const event of valid) {
      const decisions = byId.get(event.envelope.event_id) ?? [];
      assert.equal(decisions.length, 1, `${event.envelope.event_id} has exactly one decision`);
      const decision = decisions[0]!;
      assert.equal(decision.pipeline, instance.name);
      assert.ok(['approve', 'review', 'block'].includes(decision.decision));
      assert.ok(['model', 'rule'].includes(decision.decided_by), `decided_by ${decision.decided_by}`);
      assert.equal(decision.decision_version, 1);
      assert.equal(decision.occurred_at, event.occurredAtMs);
      assert.ok(decision.decided_at >= started && decision.decided_at <= Date.now());
      assert.match(decision.policy_version, /^policy-[0-9a-f]{12}$/);
      assert.ok(decision.reasons.length > 0);
      assert.ok(typeof decision.score === 'number' && decision.score >= 0 && decision.score <= 1);
      assert.match(decision.model_version ?? '', /^signup-risk-/);
    }
    for (const message of decided.messages) {
      const event = valid.find((e) => e.envelope.event_id === message.value.event_id);
      if (event) assert.equal(message.key, event.key, 'the producer key is kept end to end');
    }
    assert.equal(decided.messages.length, valid.length + 2, 'no decision for any bad input, none twice');
  });

  it('accepts registry-framed Avro on the raw topic and normalizes it like JSON', () => {
    const decision = decided.messages.find((m) => m.value.event_id === avroEventId);
    assert.ok(decision, 'the Avro event was decided');
    assert.equal(decision.value.occurred_at, started);
  });

  it('applies the policy: disposable domains blocked by rule, thresholds on the model score, enterprise never auto-blocked', () => {
    const disposable = new Set<string>(DISPOSABLE_DOMAINS);
    let disposableSeen = 0;
    for (const event of valid) {
      const { value: decision } = decided.messages.find((m) => m.value.event_id === event.envelope.event_id)!;
      if (disposable.has(event.payload.email_domain)) {
        disposableSeen++;
        assert.deepEqual([decision.decision, decision.decided_by], ['block', 'rule'], `${event.payload.email} is disposable`);
        assert.ok(decision.reasons.includes('disposable_email_domain'));
        continue;
      }
      const score = decision.score!;
      const expected =
        score >= BLOCK_AT ? (event.payload.plan === 'enterprise' ? 'review' : 'block') : score >= REVIEW_AT ? 'review' : 'approve';
      assert.equal(decision.decision, expected, `score ${score}, plan ${event.payload.plan}`);
    }
    assert.ok(disposableSeen > 0, 'the generated stream holds disposable domains');
    const mix = new Set(decided.messages.map((m) => m.value.decision));
    assert.deepEqual([...mix].sort(), ['approve', 'block', 'review'], 'the stream exercises every decision');

    const enterprise = decided.messages.find((m) => m.value.event_id === enterpriseId)!.value;
    assert.ok(enterprise.score! >= BLOCK_AT, `the risky enterprise signup scores above the block threshold (${enterprise.score})`);
    assert.equal(enterprise.decision, 'review');
    assert.ok(enterprise.reasons.includes('enterprise_never_auto_blocked'), enterprise.reasons.join(','));
  });

  it('writes every review decision to the review topic as well, with the payload', async () => {
    const reviews = decided.messages.filter((m) => m.value.decision === 'review').map((m) => m.value.event_id);
    assert.ok(reviews.length > 0);
    // Audit items (a sample of automatic decisions, kind `audit`) share the topic.
    const items = () => review.messages.filter((m) => (m.value as { kind?: string }).kind !== 'audit');
    await review.until('all reviews', () => items().length >= reviews.length);
    assert.deepEqual(items().map((m) => m.value.event_id).sort(), [...reviews].sort());
    for (const { value } of items()) {
      assert.equal(value.decision, 'review');
      assert.ok(value.payload.email.length > 0 && value.payload.email === value.payload.email.toLowerCase());
    }
  });

  it('dead-letters each class of bad input with its original bytes, key, reason and headers', () => {
    const expectations = [
      ...bad.map((sample) => ({ key: sample.key, value: sample.value, reason: sample.reason, field: sample.field, name: sample.name })),
      { key: unknownSchemaKey, value: unknownSchemaValue, reason: 'UNKNOWN_SCHEMA', field: null, name: 'unknown-schema-id' },
    ];
    assert.equal(dlq.messages.length, expectations.length, 'one dead letter per bad input, nothing else');
    for (const expected of expectations) {
      const letter = dlq.messages.find((m) => m.key === expected.key);
      assert.ok(letter, `${expected.name} reached the dead-letter topic`);
      assert.ok((letter.raw ?? Buffer.alloc(0)).equals(expected.value), `${expected.name}: original bytes kept`);
      const h = letter.headers;
      assert.equal(h['dlq.reason'], expected.reason, `${expected.name}: reason`);
      assert.ok((h['dlq.message'] ?? '').length > 0, `${expected.name}: message`);
      if (expected.field) assert.ok(h['dlq.message']!.startsWith(`${expected.field}:`), `${expected.name}: ${h['dlq.message']}`);
      assert.equal(h['dlq.stage'], 'validate');
      assert.equal(h['dlq.source.topic'], instance.topic('raw'));
      assert.match(h['dlq.source.partition'] ?? '', /^\d+$/);
      assert.match(h['dlq.source.offset'] ?? '', /^\d+$/);
      const failedAt = Number(h['dlq.failed_at']);
      assert.ok(failedAt >= started && failedAt <= Date.now(), `${expected.name}: failed_at ${failedAt}`);
    }
    const classes = new Set(expectations.map((e) => e.reason));
    for (const reason of ['MALFORMED_PAYLOAD', 'SCHEMA_VIOLATION', 'UNEXPECTED_EVENT_TYPE', 'OVERSIZED', 'UNKNOWN_SCHEMA']) {
      assert.ok(classes.has(reason), `covers ${reason}`);
    }
  });

  it('kill switch: on makes decide fall back within a second without a restart; off restores the model', async () => {
    const paced = async (label: string, count: number) => {
      const events = [...generateSignups({ seed: 99, count, startMs: Date.now(), idPrefix: `${prefix}-${label}` })];
      // A stream spread over ~2.5 s, so that some of it is decided well after the switch.
      for (let i = 0; i < events.length; i += 10) {
        await instance.produce(events.slice(i, i + 10).map((e) => ({ key: e.key, value: envelopeBytes(e.envelope) })));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return events;
    };
    const decisionsOf = async (events: GeneratedSignup[]) => {
      const ids = new Set(events.map((e) => e.envelope.event_id));
      const got = await decided.until(`${events.length} decisions`, (ms) => ms.filter((m) => ids.has(m.value.event_id)).length >= events.length);
      return got.filter((m) => ids.has(m.value.event_id)).map((m) => m.value);
    };

    const on = sluice(['kill-switch', 'on', '--pipeline', instance.name, '--reason', 'integration test']);
    assert.equal(on.status, 0, on.stderr);
    const switchedOnAt = Date.now();
    const duringOff = await decisionsOf(await paced('killed', 250));
    const late = duringOff.filter((d) => d.decided_at >= switchedOnAt + 1_000);
    assert.ok(late.length > 50, `decisions made more than 1 s after the switch: ${late.length}`);
    for (const decision of late) {
      assert.ok(
        (decision.decided_by === 'fallback' && decision.decision === 'review' && decision.reasons.includes('model_switched_off')) ||
          (decision.decided_by === 'rule' && decision.decision === 'block'),
        `${decision.event_id}: ${decision.decided_by}/${decision.decision}`,
      );
    }
    assert.ok(late.some((d) => d.decided_by === 'fallback'));

    const off = sluice(['kill-switch', 'off', '--pipeline', instance.name]);
    assert.equal(off.status, 0, off.stderr);
    const switchedOffAt = Date.now();
    const afterOn = await decisionsOf(await paced('restored', 250));
    const lateAgain = afterOn.filter((d) => d.decided_at >= switchedOffAt + 1_000);
    assert.ok(lateAgain.length > 50);
    assert.equal(lateAgain.filter((d) => d.decided_by === 'fallback').length, 0, 'no fallback once the switch is off');
    assert.ok(lateAgain.some((d) => d.decided_by === 'model'));
  });

  it('kill-switch refuses an unknown pipeline with a clear message and a non-zero exit', () => {
    const result = sluice(['kill-switch', 'on', '--pipeline', 'no-such-pipeline']);
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /PIPELINE_UNKNOWN/);
  });
});
