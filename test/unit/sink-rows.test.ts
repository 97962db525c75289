import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { avroType, type FramedDecode, framedEncoder } from '../../connectors/registry/registry.ts';
import type { SourceRecord } from '../../processors/runtime/types.ts';
import { REDACTED } from '../../processors/sink/mask.ts';
import type { CommonDecision, CommonScored, CommonValidated } from '../../processors/sink/records.ts';
import { envelopeOf, mapRecords, rowCount, type SinkContext } from '../../processors/sink/rows.ts';
import { SCHEMAS_ROOT, readAvsc } from '../../lib/schemas.ts';

/*
 * Test-local contracts of two kinds of pipeline, so that these tests hold
 * whatever the real pipelines' schemas become:
 * - a binary one shaped like signup-risk's first contracts, whose scored
 *   records predate label, class_names and class_scores;
 * - a multiclass one shaped like ticket-triage's, whose decisions carry fields
 *   of their own (queue, priority).
 */
const timestampMs = { type: 'long', logicalType: 'timestamp-millis' };
const nullable = (type: unknown) => ({ type: ['null', type], default: null });
const strings = { type: 'array', items: 'string' };
const doubles = { type: 'array', items: 'double' };
const envelopeFields = [
  { name: 'event_id', type: 'string' },
  { name: 'event_type', type: 'string' },
  { name: 'occurred_at', type: timestampMs },
  { name: 'source', type: 'string' },
];
const decisionFields = [
  { name: 'event_id', type: 'string' },
  { name: 'pipeline', type: 'string' },
  { name: 'decision', type: 'string' },
  { name: 'decided_by', type: { type: 'enum', name: 'DecidedBy', symbols: ['model', 'rule', 'human', 'fallback'] } },
  { name: 'reasons', type: strings },
  { name: 'score', ...nullable('double') },
  { name: 'model_version', ...nullable('string') },
  { name: 'policy_version', type: 'string' },
  { name: 'decision_version', type: 'int' },
  { name: 'occurred_at', type: timestampMs },
  { name: 'decided_at', type: timestampMs },
];
const signupPayload = {
  type: 'record',
  name: 'Payload',
  fields: [
    { name: 'user_id', type: 'string' },
    { name: 'email', type: 'string' },
    { name: 'email_domain', type: 'string' },
    { name: 'plan', type: 'string' },
  ],
};
const ticketPayload = { type: 'record', name: 'Payload', fields: [{ name: 'summary', type: 'string' }] };

const binarySchemas = {
  validated: {
    type: 'record',
    name: 'Validated',
    namespace: 'test.binary',
    fields: [...envelopeFields, { name: 'payload', type: signupPayload }, { name: 'dropped_fields', type: strings, default: [] }, { name: 'validated_at', type: timestampMs }],
  },
  scored: {
    type: 'record',
    name: 'Scored',
    namespace: 'test.binary',
    fields: [
      ...envelopeFields,
      { name: 'payload', type: signupPayload },
      { name: 'score', ...nullable('double') },
      { name: 'model_version', ...nullable('string') },
      { name: 'feature_names', type: strings, default: [] },
      { name: 'feature_values', type: doubles, default: [] },
      { name: 'validated_at', type: timestampMs },
      { name: 'scored_at', type: timestampMs },
    ],
  },
  decided: { type: 'record', name: 'Decision', namespace: 'test.binary', fields: decisionFields },
};
const multiclassSchemas = {
  scored: {
    type: 'record',
    name: 'Scored',
    namespace: 'test.multiclass',
    fields: [
      ...envelopeFields,
      { name: 'payload', type: ticketPayload },
      { name: 'score', ...nullable('double') },
      { name: 'label', ...nullable('string') },
      { name: 'class_names', type: strings, default: [] },
      { name: 'class_scores', type: doubles, default: [] },
      { name: 'model_version', ...nullable('string') },
      { name: 'feature_names', type: strings, default: [] },
      { name: 'feature_values', type: doubles, default: [] },
      { name: 'validated_at', type: timestampMs },
      { name: 'scored_at', type: timestampMs },
    ],
  },
  decided: {
    type: 'record',
    name: 'Decision',
    namespace: 'test.multiclass',
    fields: [
      ...decisionFields,
      { name: 'queue', type: { type: 'enum', name: 'Queue', symbols: ['billing', 'bug', 'security', 'account', 'feature_request'] } },
      { name: 'priority', type: { type: 'enum', name: 'Priority', symbols: ['P1', 'P2', 'P3', 'P4'] } },
      { name: 'reporter_email', ...nullable('string') },
    ],
  },
};

const types = new Map([
  [11, avroType(binarySchemas.validated)],
  [12, avroType(binarySchemas.scored)],
  [13, avroType(binarySchemas.decided)],
  [22, avroType(multiclassSchemas.scored)],
  [23, avroType(multiclassSchemas.decided)],
  [31, avroType({ type: 'record', name: 'NotAContract', fields: [{ name: 'id', type: 'string' }] })],
  // A decision with the review fields every decided contract ends with (a human's correction).
  [
    14,
    avroType({
      type: 'record',
      name: 'Decision',
      namespace: 'test.reviewed',
      fields: [...decisionFields, { name: 'reviewed_by', ...nullable('string') }, { name: 'review_reason', ...nullable('string') }, { name: 'corrects_decision_version', ...nullable('int') }],
    }),
  ],
  // The label contract as the review service writes it to <p>.feedback.
  [41, avroType(readAvsc(join(SCHEMAS_ROOT, 'ticket-triage', 'feedback.avsc')))],
]);
const encoder = (id: number) => framedEncoder(id, types.get(id)!);
const encode = { validated: encoder(11), scored: encoder(12), decided: encoder(13), reviewedDecided: encoder(14), multiclassScored: encoder(22), multiclassDecided: encoder(23), feedback: encoder(41) };

const PIPELINE = 'unit-pipeline';

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
const payload = { user_id: 'usr_0123456789ab', email: 'anna.smith@gmail.com', email_domain: 'gmail.com', plan: 'pro' };
const envelope = { event_id: 'e-1', event_type: 'user_signed_up', occurred_at: T0, source: 'web-signup' };
const validatedValue: CommonValidated = { ...envelope, payload, dropped_fields: [], validated_at: T0 + 15 };
const scoredValue: CommonScored = {
  ...envelope,
  payload,
  score: 0.25,
  model_version: 'gbt-7',
  feature_names: ['a', 'b'],
  feature_values: [1.5, -2],
  validated_at: T0 + 15,
  scored_at: T0 + 40,
};
const decidedValue: CommonDecision = {
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
const CLASSES = ['billing', 'bug', 'security', 'account', 'feature_request'];
const ticketScored: CommonScored = {
  event_id: 't-1',
  event_type: 'jira_ticket_created',
  occurred_at: T0,
  source: 'jira',
  payload: { summary: 'I was charged twice' },
  score: 0.71,
  label: 'billing',
  class_names: CLASSES,
  class_scores: [0.71, 0.1, 0.04, 0.1, 0.05],
  model_version: 'tfidf-2',
  feature_names: ['text_chars', 'text_tokens'],
  feature_values: [19, 4],
  validated_at: T0 + 10,
  scored_at: T0 + 30,
};
const ticketDecided: CommonDecision = {
  event_id: 't-1',
  pipeline: PIPELINE,
  decision: 'route',
  decided_by: 'model',
  reasons: ['top_class_confident'],
  score: 0.71,
  model_version: 'tfidf-2',
  policy_version: 'triage-1',
  decision_version: 1,
  occurred_at: T0,
  decided_at: T0 + 50,
  queue: 'billing',
  priority: 'P3',
  reporter_email: null,
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

  it('maps a binary model\'s scored record (a contract without class fields) to a model output with no label and no classes', () => {
    const { rows } = mapRecords([record('scored', encode.scored(scoredValue), 6)], ctx);
    assert.equal(rows.stageEvents[0]?.stage, 'score');
    assert.equal(rows.stageEvents[0]?.stage_at_ms, T0 + 40);
    assert.deepEqual(rows.modelOutputs, [
      {
        pipeline: PIPELINE,
        event_id: 'e-1',
        model_version: 'gbt-7',
        score: 0.25,
        label: '',
        class_names: [],
        class_scores: [],
        feature_names: ['a', 'b'],
        feature_values: [1.5, -2],
        occurred_at_ms: T0,
        scored_at_ms: T0 + 40,
        kafka_partition: 2,
        kafka_offset: 6,
      },
    ]);
  });

  it('maps a multiclass scored record to a model output with its label and every class probability', () => {
    const { rows, skipped } = mapRecords([record('scored', encode.multiclassScored(ticketScored), 7)], ctx);
    assert.deepEqual(skipped, []);
    assert.deepEqual(rows.modelOutputs, [
      {
        pipeline: PIPELINE,
        event_id: 't-1',
        model_version: 'tfidf-2',
        score: 0.71,
        label: 'billing',
        class_names: CLASSES,
        class_scores: [0.71, 0.1, 0.04, 0.1, 0.05],
        feature_names: ['text_chars', 'text_tokens'],
        feature_values: [19, 4],
        occurred_at_ms: T0,
        scored_at_ms: T0 + 30,
        kafka_partition: 2,
        kafka_offset: 7,
      },
    ]);
    assert.deepEqual(
      rows.stageEvents.map((row) => [row.stage, row.event_id, row.detail]),
      [['score', 't-1', '']],
    );
  });

  it('keeps parallel arrays parallel and finite: a malformed record cannot break the queries or the insert', () => {
    const value = { ...ticketScored, class_names: ['a', 'b', 'c'], class_scores: [0.5, Number.NaN], feature_names: ['x'], feature_values: [1, 2] };
    const { rows } = mapRecords([record('scored', encode.multiclassScored(value), 8)], ctx);
    assert.deepEqual([rows.modelOutputs[0]?.class_names, rows.modelOutputs[0]?.class_scores], [['a'], [0.5]]);
    assert.deepEqual([rows.modelOutputs[0]?.feature_names, rows.modelOutputs[0]?.feature_values], [['x'], [1]]);
    const { rows: nan } = mapRecords([record('scored', encode.multiclassScored({ ...ticketScored, score: Number.NaN }), 9)], ctx);
    assert.deepEqual(nan.modelOutputs, [], 'a NaN score is no score');
    assert.equal(nan.stageEvents[0]?.detail, 'unscored');
  });

  it('records an unscored event (kill switch on) as a stage event without a model output', () => {
    const { rows } = mapRecords([record('scored', encode.scored({ ...scoredValue, score: null, model_version: null, feature_names: [], feature_values: [] }), 6)], ctx);
    assert.equal(rows.stageEvents[0]?.detail, 'unscored');
    assert.deepEqual(rows.modelOutputs, []);
    const { rows: triage } = mapRecords([record('scored', encode.multiclassScored({ ...ticketScored, score: null, label: null, class_names: [], class_scores: [] }), 6)], ctx);
    assert.equal(triage.stageEvents[0]?.detail, 'unscored');
    assert.deepEqual(triage.modelOutputs, []);
  });

  it('maps a decision to a decide stage event (the decision as detail) and a decisions row without fields of its own', () => {
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
        extra_names: [],
        extra_values: [],
        replay_id: '',
        shadow_model_version: '',
        shadow_score: 0,
        shadow_decision: '',
        reviewed_by: '',
        review_reason: '',
        corrects_decision_version: 0,
        kafka_partition: 2,
        kafka_offset: 9,
      },
    ]);
  });

  it("keeps a human decision's reviewer, reason and the version it corrects in columns of their own, not among the pipeline's fields", () => {
    const human = { ...decidedValue, decision: 'block', decided_by: 'human', decision_version: 2, reviewed_by: 'alice', review_reason: 'a known fraud ring', corrects_decision_version: 1 };
    const { rows } = mapRecords([record('decided', encode.reviewedDecided(human), 12)], ctx);
    const row = rows.decisions[0] as unknown as Record<string, unknown>;
    assert.deepEqual([row['decided_by'], row['reviewed_by'], row['review_reason'], row['corrects_decision_version'], row['extra_names']], ['human', 'alice', 'a known fraud ring', 1, []]);
  });

  it('maps a label on the feedback topic to a labels row, apart from the data tables', () => {
    const label = {
      event_id: 't-1',
      pipeline: PIPELINE,
      item_id: 'item-t-1',
      kind: 'audit',
      label: 'route',
      label_fields: { queue: 'security', priority: 'P1' },
      reviewer: 'erin',
      reason: 'a security report',
      original_decision: 'route',
      original_decided_by: 'model',
      original_decision_version: 1,
      decision_version: 2,
      score: 0.71,
      model_version: 'tfidf-2',
      policy_version: 'triage-1',
      occurred_at: T0,
      created_at: T0 + 50,
      resolved_at: T0 + 600_000,
    };
    const { rows, labels, skipped } = mapRecords([record('feedback', encode.feedback(label), 3), record('feedback', encode.feedback({ ...label, reviewer: '' }), 4)], ctx);
    assert.equal(rowCount(rows), 0, 'a label is no stage event, decision or model output');
    assert.deepEqual(labels, [
      {
        pipeline: PIPELINE,
        event_id: 't-1',
        item_id: 'item-t-1',
        kind: 'audit',
        label: 'route',
        label_field_names: ['priority', 'queue'],
        label_field_values: ['P1', 'security'],
        reviewer: 'erin',
        reason: 'a security report',
        original_decision: 'route',
        original_decided_by: 'model',
        original_decision_version: 1,
        decision_version: 2,
        score: 0.71,
        model_version: 'tfidf-2',
        policy_version: 'triage-1',
        occurred_at_ms: T0,
        created_at_ms: T0 + 50,
        labeled_at_ms: T0 + 600_000,
        kafka_partition: 2,
        kafka_offset: 3,
      },
    ]);
    assert.deepEqual(skipped.map((s) => [s.offset, s.reason]), [['4', 'missing-fields']], 'a label without a reviewer is skipped, with a reason');
  });

  it('keeps the fields a pipeline adds to its decisions as names and texts, in schema order, with personal data masked', () => {
    const { rows } = mapRecords(
      [
        record('decided', encode.multiclassDecided(ticketDecided), 10),
        record('decided', encode.multiclassDecided({ ...ticketDecided, decision: 'review', decision_version: 2, queue: 'security', priority: 'P1', reporter_email: 'bob@example.com' }), 11),
      ],
      ctx,
    );
    assert.deepEqual(rows.decisions[0], {
      pipeline: PIPELINE,
      event_id: 't-1',
      decision: 'route',
      decided_by: 'model',
      reasons: ['top_class_confident'],
      score: 0.71,
      model_version: 'tfidf-2',
      policy_version: 'triage-1',
      decision_version: 1,
      occurred_at_ms: T0,
      decided_at_ms: T0 + 50,
      extra_names: ['queue', 'priority', 'reporter_email'],
      extra_values: ['billing', 'P3', ''],
      replay_id: '',
      shadow_model_version: '',
      shadow_score: 0,
      shadow_decision: '',
      reviewed_by: '',
      review_reason: '',
      corrects_decision_version: 0,
      kafka_partition: 2,
      kafka_offset: 10,
    });
    assert.deepEqual(rows.decisions[1]?.extra_values, ['security', 'P1', REDACTED]);
    assert.deepEqual(
      rows.stageEvents.map((row) => [row.stage, row.detail, row.decision_version]),
      [
        ['decide', 'route', 1],
        ['decide', 'review', 2],
      ],
    );
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
        record('scored', encoder(31)({ id: 'x' }), 5),
        record('validated', encode.validated(validatedValue), 6),
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
        ['5', 'missing-fields'],
      ],
    );
    assert.equal(rows.stageEvents.length, 1);
  });

  it('maps the same record to the same rows every time (what makes a re-insert collapse)', () => {
    const batch = [
      record('validated', encode.validated(validatedValue), 1),
      record('scored', encode.scored(scoredValue), 1),
      record('decided', encode.decided(decidedValue), 1),
      record('scored', encode.multiclassScored(ticketScored), 2),
      record('decided', encode.multiclassDecided(ticketDecided), 2),
      record('dlq', Buffer.from('{"event_id":"x","email":"a@b.co"}'), 1, dlqHeaders()),
      record('feedback', encode.feedback({ event_id: 'e-1', pipeline: PIPELINE, item_id: 'i', kind: 'review', label: 'block', reviewer: 'al', reason: 'r', original_decision: 'review', original_decided_by: 'model', original_decision_version: 1, decision_version: 2, policy_version: 'p', occurred_at: T0, created_at: T0, resolved_at: T0 + 1 }), 1),
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
