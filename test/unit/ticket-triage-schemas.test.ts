import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import avsc from 'avsc';
import { contractSchemas } from '../../lib/schemas.ts';
import { ticketTriage } from '../../pipelines/ticket-triage/index.ts';
import { generateTicketEvents } from '../../pipelines/ticket-triage/generator.ts';
import { parseTicketTriagePayload } from '../../pipelines/ticket-triage/payload.ts';
import type { DecisionRecord, ReviewRecord, ScoredRecord, ValidatedRecord } from '../../pipelines/ticket-triage/types.ts';

const schemas = contractSchemas(ticketTriage.schemasDir);
// As the registry adapter parses them: a union of two records would be refused.
const types = Object.fromEntries(Object.entries(schemas).map(([topic, schema]) => [topic, avsc.Type.forSchema(schema as avsc.Schema, { wrapUnions: false })]));
const fields = (topic: string) => (schemas as Record<string, { fields: Array<{ name: string; type: unknown; default?: unknown }> }>)[topic]!.fields;
const timestampMs = { type: 'long', logicalType: 'timestamp-millis' };

const roundTrip = (topic: string, value: unknown) => types[topic]!.fromBuffer(types[topic]!.toBuffer(value));
/** Decoded records are class instances; compare their data. */
const plain = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;

const events = [...generateTicketEvents({ seed: 31, count: 200, startMs: Date.UTC(2026, 10, 1) })];
const ticketEvent = events.find((e) => e.eventType === 'jira_ticket_created' && e.payload.ticket!.description !== null && e.payload.ticket!.labels.length > 0)!;
const documentEvent = events.find((e) => e.eventType === 'document_uploaded')!;

function validated(event: (typeof events)[number]): ValidatedRecord {
  return { event_id: event.eventId, event_type: event.eventType, occurred_at: event.occurredAtMs, source: 'test', payload: event.payload, dropped_fields: event.droppedFields, validated_at: event.occurredAtMs + 5 };
}

describe('ticket-triage Avro contracts', () => {
  it('put the common fields first, in the contract order and types', () => {
    const envelope = [
      { name: 'event_id', type: 'string' },
      { name: 'event_type', type: 'string' },
      { name: 'occurred_at', type: timestampMs },
      { name: 'source', type: 'string' },
    ];
    const strip = (list: Array<{ name: string; type: unknown; default?: unknown }>) => list.map(({ name, type, default: fallback }) => (fallback === undefined ? { name, type } : { name, type, default: fallback }));
    assert.deepEqual(strip(fields('validated').filter((f) => f.name !== 'payload')), [
      ...envelope,
      { name: 'dropped_fields', type: { type: 'array', items: 'string' }, default: [] },
      { name: 'validated_at', type: timestampMs },
      { name: 'timeliness', type: ['null', 'string'], default: null },
    ]);
    assert.deepEqual(
      fields('scored').map((f) => f.name),
      ['event_id', 'event_type', 'occurred_at', 'source', 'payload', 'score', 'label', 'class_names', 'class_scores', 'model_version', 'feature_names', 'feature_values', 'validated_at', 'scored_at', 'shadow_model_version', 'shadow_score', 'shadow_class_scores'],
    );
    const decision = ['event_id', 'pipeline', 'decision', 'decided_by', 'reasons', 'score', 'model_version', 'policy_version', 'decision_version', 'occurred_at', 'decided_at', 'queue', 'priority', 'replay_id', 'shadow_model_version', 'shadow_score', 'shadow_decision', 'reviewed_by', 'review_reason', 'corrects_decision_version'];
    assert.deepEqual(fields('decided').map((f) => f.name), decision);
    // The review record carries the decision a reviewer needs, not the replay and shadow fields, and the item's kind.
    assert.deepEqual(fields('review').map((f) => f.name), [...decision.slice(0, 13), 'payload', 'kind']);
    assert.deepEqual(fields('decided').find((f) => f.name === 'decided_by')!.type, { type: 'enum', name: 'DecidedBy', namespace: 'sluice', symbols: ['model', 'rule', 'human', 'fallback'] });
    for (const topic of ['scored', 'decided'] as const) {
      for (const name of ['score', 'model_version']) assert.deepEqual(fields(topic).find((f) => f.name === name)!.default, null, `${topic}.${name}`);
    }
  });

  it('use one payload record for every topic that carries the payload', () => {
    const payload = fields('validated').find((f) => f.name === 'payload')!.type;
    assert.deepEqual(fields('scored').find((f) => f.name === 'payload')!.type, payload);
    assert.deepEqual(fields('review').find((f) => f.name === 'payload')!.type, payload);
  });

  it('carry a validated ticket and a validated document unchanged', () => {
    for (const event of [ticketEvent, documentEvent]) {
      const record = validated(event);
      // timeliness, added later, reads its default from a record that does not set it.
      assert.deepEqual(plain(roundTrip('validated', record)), plain({ ...record, timeliness: null }));
    }
  });

  it('carry a validated payload from an Avro-decoded record through the payload rules unchanged', () => {
    // A producer may send the raw event as Avro: the decoded record (a class instance) must validate alike.
    const decoded = roundTrip('validated', validated(documentEvent)) as { payload: { document: object } };
    const result = parseTicketTriagePayload('document_uploaded', decoded.payload.document);
    assert.ok(result.ok);
    assert.deepEqual(result.value, documentEvent.payload);
  });

  it('carry scored, decided and review records', () => {
    const { dropped_fields: _dropped, ...common } = validated(ticketEvent);
    const scored: ScoredRecord = {
      ...common,
      score: 0.82,
      label: 'billing',
      class_names: ['billing', 'bug', 'security', 'account', 'feature_request'],
      class_scores: [0.82, 0.1, 0.03, 0.03, 0.02],
      model_version: 'ticket-triage-2026-12-01.1',
      feature_names: [...ticketTriage.model.monitoredNames],
      feature_values: ticketTriage.model.monitored(ticketEvent.eventType, ticketEvent.payload, ticketTriage.model.features(ticketEvent.eventType, ticketEvent.payload)),
      scored_at: ticketEvent.occurredAtMs + 9,
    };
    // Fields added later read their defaults from a record that does not set them (BACKWARD compatible).
    const shadowless = { shadow_model_version: null, shadow_score: null, shadow_class_scores: [] };
    assert.deepEqual(plain(roundTrip('scored', scored)), plain({ ...scored, ...shadowless }));
    const shadowed = { ...scored, shadow_model_version: 'ticket-triage-next', shadow_score: 0.6, shadow_class_scores: [0.6, 0.2, 0.1, 0.05, 0.05] };
    assert.deepEqual(plain(roundTrip('scored', shadowed)), plain(shadowed));
    const decision: DecisionRecord & Record<string, unknown> = {
      event_id: scored.event_id,
      pipeline: 'ticket-triage',
      decision: 'review',
      decided_by: 'model',
      reasons: ['score_below_route_threshold'],
      score: 0.55,
      model_version: scored.model_version,
      policy_version: 'policy-0123456789ab',
      decision_version: 1,
      occurred_at: scored.occurred_at,
      decided_at: scored.scored_at + 1,
      queue: 'billing',
      priority: 'P3',
      replay_id: null,
      shadow_model_version: null,
      shadow_score: null,
      shadow_decision: null,
    };
    const unreviewed = { reviewed_by: null, review_reason: null, corrects_decision_version: null };
    assert.deepEqual(plain(roundTrip('decided', decision)), plain({ ...decision, ...unreviewed }));
    const { replay_id: _r, shadow_model_version: _v, shadow_score: _s, shadow_decision: _d, ...reviewed } = decision;
    const review: ReviewRecord = { ...(reviewed as DecisionRecord), payload: documentEvent.payload };
    assert.deepEqual(plain(roundTrip('review', { ...review, replay_id: null })), plain({ ...review, kind: 'review' }));
  });

  it('refuse a payload with neither or a wrongly typed branch', () => {
    const record = validated(ticketEvent);
    assert.ok(types['validated']!.isValid(record));
    assert.ok(types['validated']!.isValid({ ...record, payload: { ticket: null, document: null } }), 'the schema cannot say "exactly one"; the payload rules do');
    assert.ok(!types['validated']!.isValid({ ...record, payload: { ticket: { ...record.payload.ticket, labels: 'x' }, document: null } }));
    assert.ok(!types['decided']!.isValid({ decided_by: 'robot' }));
  });
});
