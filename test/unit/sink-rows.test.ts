import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { avroType, type FramedDecode, framedEncoder } from '../../connectors/registry/registry.ts';
import type { DecisionRecord, ScoredRecord, SignupPayload, ValidatedRecord } from '../../pipelines/signup-risk/types.ts';
import { REDACTED } from '../../processors/sink/mask.ts';
import { envelopeOf, mapRecords, rowCount, type SinkContext } from '../../processors/sink/rows.ts';
import type { SourceRecord } from '../../processors/runtime/types.ts';
import { decided, scored, validated } from '../../schemas/signup-risk.ts';

const PIPELINE = 'signup-risk-unit';
const types = new Map([
  [11, avroType(validated)],
  [12, avroType(scored)],
  [13, avroType(decided)],
]);
const encode = { validated: framedEncoder(11, types.get(11)!), scored: framedEncoder(12, types.get(12)!), decided: framedEncoder(13, types.get(13)!) };

/** Decodes with real Avro types, as the registry-backed catalog does once schemas are fetched. */
const ctx: SinkContext = {
  pipeline: PIPELINE,
  decode(value: Buffer): FramedDecode {
    const id = value.readUInt32BE(1);
    const type = types.get(id);
    if (!type) return { kind: 'unknown-schema', schemaId: id };
    try {
      return { kind: 'decoded', value: type.fromBuffer(value.subarray(5)), schemaId: id };
    } catch (error) {
      return { kind: 'undecodable', message: String(error) };
    }
  },
};

const T0 = Date.UTC(2026, 10, 28, 10, 0, 0);
const payload: SignupPayload = {
  user_id: 'usr_0123456789ab',
  email: 'anna.smith@gmail.com',
  email_domain: 'gmail.com',
  country: 'DE',
  ip_country: null,
  signup_channel: 'web',
  plan: 'pro',
  email_domain_age_days: 10_000,
  signups_from_ip_24h: 0,
  referral_code: null,
};
const envelope = { event_id: 'e-1', event_type: 'user_signed_up', occurred_at: T0, source: 'web-signup' };
const validatedValue: ValidatedRecord = { ...envelope, payload, dropped_fields: [], validated_at: T0 + 15 };
const scoredValue: ScoredRecord = {
  ...envelope,
  payload,
  score: 0.25,
  model_version: 'gbt-7',
  feature_names: ['a', 'b'],
  feature_values: [1.5, -2],
  validated_at: T0 + 15,
  scored_at: T0 + 40,
};
const decidedValue: DecisionRecord = {
  event_id: 'e-1',
  pipeline: PIPELINE,
  decision: 'review',
  decided_by: 'model',
  reasons: ['score 0.25 >= review threshold'],
  score: 0.25,
  model_version: 'gbt-7',
  policy_version: 'p-3',
  decision_version: 1,
  occurred_at: T0,
  decided_at: T0 + 70,
};

function record(suffix: string, value: Buffer | null, offset: number, headers: Record<string, string> = {}): SourceRecord {
  return { topic: `${PIPELINE}.${suffix}`, partition: 2, offset: String(offset), key: Buffer.from('usr'), value, headers, timestampMs: T0 + 100 };
}

const dlqHeaders = (overrides: Record<string, string> = {}) => ({
  'dlq.reason': 'SCHEMA_VIOLATION',
  'dlq.message': "payload.email: 'Bob@Example.com' is not a valid address",
  'dlq.stage': 'validate',
  'dlq.source.topic': `${PIPELINE}.raw`,
  'dlq.source.partition': '1',
  'dlq.source.offset': '77',
  'dlq.failed_at': String(T0 + 5),
  ...overrides,
});

describe('sink: records to table rows', () => {
  it('maps a validated record to a validate stage event with its times and Kafka coordinates', () => {
    const { rows, skipped } = mapRecords([record('validated', encode.validated(validatedValue), 5)], ctx);
    assert.deepEqual(skipped, []);
    assert.deepEqual(rows.stageEvents, [
      {
        pipeline: PIPELINE,
        stage: 'validate',
        outcome: 'passed',
        detail: '',
        event_id: 'e-1',
        decision_version: 0,
        occurred_at_ms: T0,
        stage_at_ms: T0 + 15,
        kafka_topic: `${PIPELINE}.validated`,
        kafka_partition: 2,
        kafka_offset: 5,
        kafka_timestamp_ms: T0 + 100,
      },
    ]);
    assert.equal(rowCount(rows), 1);
  });

  it('maps a scored record to a stage event and a model output with the feature arrays', () => {
    const { rows } = mapRecords([record('scored', encode.scored(scoredValue), 6)], ctx);
    assert.equal(rows.stageEvents[0]?.stage, 'score');
    assert.equal(rows.stageEvents[0]?.stage_at_ms, T0 + 40);
    assert.deepEqual(rows.modelOutputs, [
      {
        pipeline: PIPELINE,
        event_id: 'e-1',
        model_version: 'gbt-7',
        score: 0.25,
        feature_names: ['a', 'b'],
        feature_values: [1.5, -2],
        occurred_at_ms: T0,
        scored_at_ms: T0 + 40,
        kafka_partition: 2,
        kafka_offset: 6,
      },
    ]);
  });

  it('records an unscored event (kill switch on) as a stage event without a model output', () => {
    const { rows } = mapRecords([record('scored', encode.scored({ ...scoredValue, score: null, model_version: null, feature_names: [], feature_values: [] }), 6)], ctx);
    assert.equal(rows.stageEvents[0]?.detail, 'unscored');
    assert.deepEqual(rows.modelOutputs, []);
  });

  it('maps a decision to a decide stage event (the decision as detail) and a decisions row', () => {
    const { rows } = mapRecords([record('decided', encode.decided({ ...decidedValue, decision_version: 2, decided_by: 'human', score: null, model_version: null }), 9)], ctx);
    assert.equal(rows.stageEvents[0]?.detail, 'review');
    assert.equal(rows.stageEvents[0]?.decision_version, 2);
    assert.deepEqual(rows.decisions, [
      {
        pipeline: PIPELINE,
        event_id: 'e-1',
        decision: 'review',
        decided_by: 'human',
        reasons: ['score 0.25 >= review threshold'],
        score: null,
        model_version: null,
        policy_version: 'p-3',
        decision_version: 2,
        occurred_at_ms: T0,
        decided_at_ms: T0 + 70,
        kafka_partition: 2,
        kafka_offset: 9,
      },
    ]);
  });

  it('maps a dead letter from its headers, reads the event id and time from the JSON it carries, and masks the preview and message', () => {
    const raw = { ...envelope, occurred_at: new Date(T0).toISOString(), payload: { ...payload, email: 'Bob@Example.com', plan: 'gold' } };
    const bytes = Buffer.from(JSON.stringify(raw));
    const { rows } = mapRecords([record('dlq', bytes, 3, dlqHeaders())], ctx);
    const [letter] = rows.deadLetters;
    assert.ok(letter);
    assert.equal(letter.reason, 'SCHEMA_VIOLATION');
    assert.equal(letter.stage, 'validate');
    assert.equal(letter.message, "payload.email: '[email]' is not a valid address");
    assert.equal(letter.event_id, 'e-1');
    assert.deepEqual([letter.source_topic, letter.source_partition, letter.source_offset], [`${PIPELINE}.raw`, 1, 77]);
    assert.equal(letter.failed_at_ms, T0 + 5);
    assert.equal(letter.size_bytes, bytes.length);
    assert.deepEqual([letter.kafka_partition, letter.kafka_offset], [2, 3]);
    assert.doesNotMatch(letter.preview, /Bob|Example|usr_0123/i);
    assert.match(letter.preview, new RegExp(`"email":"\\${REDACTED.slice(0, -1)}\\]"`));
    assert.match(letter.preview, /"source":"web-signup".*"email_domain":"gmail.com"/, 'fields that are not personal stay readable');
    assert.deepEqual(rows.stageEvents, [
      {
        pipeline: PIPELINE,
        stage: 'validate',
        outcome: 'dead_lettered',
        detail: 'SCHEMA_VIOLATION',
        event_id: 'e-1',
        decision_version: 0,
        occurred_at_ms: T0,
        stage_at_ms: T0 + 5,
        kafka_topic: `${PIPELINE}.dlq`,
        kafka_partition: 2,
        kafka_offset: 3,
        kafka_timestamp_ms: T0 + 100,
      },
    ]);
  });

  it('decodes a dead letter that is a registry-framed record (a later stage failed) to find its event', () => {
    const { rows } = mapRecords([record('dlq', encode.validated(validatedValue), 4, dlqHeaders({ 'dlq.stage': 'score', 'dlq.reason': 'SCORING_FAILED' }))], ctx);
    assert.equal(rows.deadLetters[0]?.event_id, 'e-1');
    assert.equal(rows.stageEvents[0]?.stage, 'score');
    assert.equal(rows.stageEvents[0]?.occurred_at_ms, T0);
    assert.match(rows.deadLetters[0]!.preview, /^\{"event_id":"e-1"/);
    assert.doesNotMatch(rows.deadLetters[0]!.preview, /anna|usr_0123/);
  });

  it('keeps a dead letter with unreadable bytes: no event id, and its failure time stands in for occurred_at', () => {
    const { rows, skipped } = mapRecords([record('dlq', Buffer.from([0xc3, 0x28, 0x00]), 8, dlqHeaders({ 'dlq.reason': 'MALFORMED_PAYLOAD' }))], ctx);
    assert.deepEqual(skipped, []);
    assert.equal(rows.deadLetters[0]?.event_id, '');
    assert.equal(rows.stageEvents[0]?.event_id, '');
    assert.equal(rows.stageEvents[0]?.occurred_at_ms, T0 + 5);
    const { rows: empty } = mapRecords([record('dlq', null, 9, dlqHeaders())], ctx);
    assert.equal(empty.deadLetters[0]?.size_bytes, 0);
  });

  it('skips, with a reason, records it cannot turn into rows, and maps the rest of the batch', () => {
    const { rows, skipped } = mapRecords(
      [
        record('validated', Buffer.from([0, 0, 0, 0, 99, 1]), 1),
        record('scored', Buffer.alloc(0), 2),
        { ...record('validated', encode.validated(validatedValue), 3), topic: 'another.validated' },
        record('decided', Buffer.from([0, 0, 0, 0, 13, 0xff]), 4),
        record('validated', encode.validated(validatedValue), 5),
      ],
      ctx,
    );
    assert.deepEqual(
      skipped.map((s) => [s.offset, s.reason]),
      [
        ['1', 'unknown-schema'],
        ['2', 'empty-value'],
        ['3', 'unexpected-topic'],
        ['4', 'undecodable'],
      ],
    );
    assert.equal(rows.stageEvents.length, 1);
  });

  it('maps the same record to the same rows every time (what makes a re-insert collapse)', () => {
    const batch = [
      record('validated', encode.validated(validatedValue), 1),
      record('scored', encode.scored(scoredValue), 1),
      record('decided', encode.decided(decidedValue), 1),
      record('dlq', Buffer.from('{"event_id":"x","email":"a@b.co"}'), 1, dlqHeaders()),
    ];
    assert.deepEqual(mapRecords(batch, ctx), mapRecords(batch, ctx));
  });

  it('reads the envelope of a dead letter only from fields that follow the contract', () => {
    assert.deepEqual(envelopeOf({ event_id: 'a', occurred_at: '2026-11-28T10:00:00Z' }), { eventId: 'a', occurredAtMs: T0 });
    assert.deepEqual(envelopeOf({ event_id: 'a', occurred_at: String(T0) }), { eventId: 'a', occurredAtMs: T0 });
    assert.deepEqual(envelopeOf({ event_id: 'x'.repeat(129), occurred_at: 'yesterday' }), { eventId: '', occurredAtMs: 0 });
    assert.deepEqual(envelopeOf([1, 2]), { eventId: '', occurredAtMs: 0 });
    assert.deepEqual(envelopeOf(null), { eventId: '', occurredAtMs: 0 });
  });
});
