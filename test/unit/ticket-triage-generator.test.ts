import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SourceRecord } from '../../lib/contracts.ts';
import { ticketTriage } from '../../pipelines/ticket-triage/index.ts';
import { type GeneratedTicketEvent, generateTicketEvents, malformedSamples } from '../../pipelines/ticket-triage/generator.ts';
import { parseTicketTriagePayload } from '../../pipelines/ticket-triage/payload.ts';
import { CATEGORIES } from '../../pipelines/ticket-triage/types.ts';
import { type ValidateContext, validateRecord } from '../../processors/validate/transform.ts';

const START_MS = Date.UTC(2026, 7, 1);
const take = (seed: number, count: number, extra: { idPrefix?: string; firstIndex?: number; spacingMs?: number } = {}) => [
  ...generateTicketEvents({ seed, count, startMs: START_MS, ...extra }),
];

const validateContext: ValidateContext = {
  pipeline: 'ticket-triage',
  eventTypes: ticketTriage.eventTypes,
  maxMessageBytes: ticketTriage.maxMessageBytes,
  parsePayload: ticketTriage.payload,
  decodeFramed: () => ({ kind: 'undecodable', message: 'no registry in this test' }),
  now: () => START_MS,
};

const record = (key: string, value: Buffer | null): SourceRecord => ({
  topic: 'ticket-triage.raw',
  partition: 0,
  offset: '0',
  key: Buffer.from(key),
  value,
  headers: {},
  timestampMs: START_MS,
});

describe('ticket-triage generator', () => {
  it('gives identical events for the same seed and different ones for another seed', () => {
    const a = take(11, 200);
    assert.deepEqual(take(11, 200), a);
    const b = take(12, 200);
    assert.equal(a.filter((event, i) => event.value.equals(b[i]!.value)).length, 0);
  });

  it('makes each event a function of (seed, index): counts and starting points do not change earlier events', () => {
    const all = take(5, 100);
    assert.deepEqual(take(5, 40), all.slice(0, 40));
    assert.deepEqual(take(5, 30, { firstIndex: 70 }), all.slice(70));
  });

  it('numbers events by seed and index, keys them by ticket key or document id, and spaces occurred_at', () => {
    const events = take(3, 300, { spacingMs: 250, idPrefix: 'run-7' });
    events.forEach((event, i) => {
      assert.equal(event.eventId, `run-7-3-${i}`);
      assert.equal(event.envelope.event_id, event.eventId);
      assert.equal(event.occurredAtMs, START_MS + i * 250);
      const at = event.envelope.occurred_at;
      assert.equal(typeof at === 'number' ? at : Date.parse(at), event.occurredAtMs);
      assert.equal(event.key, event.payload.ticket?.ticket_key ?? event.payload.document?.document_id);
      assert.deepEqual(JSON.parse(event.value.toString('utf8')), event.envelope);
    });
  });

  it('says exactly what validation makes of every raw payload', () => {
    for (const event of take(21, 3_000)) {
      const result = parseTicketTriagePayload(event.eventType, event.envelope.payload);
      assert.ok(result.ok, `${event.eventId}: ${JSON.stringify(result)}`);
      assert.deepEqual(result.value, event.payload, event.eventId);
      assert.deepEqual(result.droppedFields, event.droppedFields, event.eventId);
    }
  });

  it('passes the generic validate stage with every generated event', () => {
    for (const event of take(22, 500)) {
      const outcome = validateRecord(record(event.key, event.value), validateContext);
      assert.equal(outcome.kind, 'emit', JSON.stringify(outcome));
      if (outcome.kind !== 'emit') continue;
      const validated = outcome.outputs[0]!.value;
      assert.deepEqual(validated.payload, event.payload);
      assert.equal(validated.occurred_at, event.occurredAtMs);
    }
  });

  it('mixes event types, categories, noise and the quirks of real producers', () => {
    const events = take(8, 6_000);
    const share = (predicate: (e: GeneratedTicketEvent) => boolean) => events.filter(predicate).length / events.length;
    const raw = (e: GeneratedTicketEvent) => e.envelope.payload;
    const documents = share((e) => e.eventType === 'document_uploaded');
    assert.ok(documents > 0.12 && documents < 0.18, `documents ${documents}`);
    for (const category of CATEGORIES) assert.ok(share((e) => e.category === category) > 0.08, category);
    const noise = share((e) => e.category !== e.drawnFrom);
    assert.ok(noise > 0.035 && noise < 0.065, `label noise ${noise}`);
    const mixed = share((e) => e.secondary !== null);
    assert.ok(mixed > 0.17 && mixed < 0.23, `mixed ${mixed}`);
    assert.ok(share((e) => e.payload.document?.text_truncated === true) > 0.002, 'truncated documents');
    assert.ok(share((e) => e.payload.ticket !== null && e.payload.ticket.description === null) > 0.1, 'tickets without description');
    assert.ok(share((e) => String(raw(e)['description'] ?? raw(e)['text'] ?? '').includes('\r\n')) > 0.1, 'CRLF');
    assert.ok(share((e) => /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(String(raw(e)['description'] ?? raw(e)['text'] ?? ''))) > 0.01, 'control characters');
    assert.ok(share((e) => Array.isArray(raw(e)['labels']) && (raw(e)['labels'] as string[]).length > (e.payload.ticket?.labels.length ?? 0)) > 0.02, 'duplicate labels');
    assert.ok(share((e) => /[A-Z]/.test(String(raw(e)['reporter_email'] ?? ''))) > 0.05, 'emails with capitals');
    assert.ok(share((e) => String(raw(e)['content_type'] ?? '').includes(';')) > 0.005, 'content types with parameters');
    assert.ok(share((e) => e.droppedFields.length > 0) > 0.15, 'unknown extra fields');
    assert.ok(share((e) => e.payload.ticket?.priority_hint != null) > 0.3, 'priority hints');
    const largest = Math.max(...events.map((e) => e.value.length));
    assert.ok(largest < ticketTriage.maxMessageBytes, `largest event ${largest} bytes`);
  });

  it('writes security tickets that the model must catch without the rule, and others that carry indicators', () => {
    const security = take(9, 4_000).filter((e) => e.drawnFrom === 'security' && e.payload.ticket !== null);
    const text = (e: GeneratedTicketEvent) => `${e.payload.ticket!.summary} ${e.payload.ticket!.description ?? ''}`;
    const withIndicator = security.filter((e) => /phishing|vulnerabilit|leaked password|data breach|CVE-\d{4}-\d{4,}/i.test(text(e))).length;
    assert.ok(withIndicator > security.length * 0.15 && withIndicator < security.length * 0.85, `${withIndicator} of ${security.length}`);
  });
});

describe('ticket-triage malformed samples', () => {
  const samples = malformedSamples({ maxMessageBytes: ticketTriage.maxMessageBytes, idPrefix: 'mal' });

  it('covers every class of bad input the contract names, once each, with unique keys', () => {
    const names = samples.map((s) => s.name);
    assert.equal(new Set(names).size, names.length);
    assert.equal(new Set(samples.map((s) => s.key)).size, samples.length);
    for (const name of [
      'not-json',
      'invalid-utf8',
      'tombstone',
      'missing-summary',
      'summary-256-chars',
      'description-over-32kib',
      'bad-ticket-key',
      'labels-not-array',
      'labels-21',
      'unexpected-event-type',
      'oversized',
      'document-sha256-short',
      'document-content-type',
      'document-pages-zero',
      'document-text-over-64kib',
    ]) {
      assert.ok(names.includes(name), name);
    }
    assert.deepEqual(new Set(samples.map((s) => s.reason)), new Set(['MALFORMED_PAYLOAD', 'SCHEMA_VIOLATION', 'UNEXPECTED_EVENT_TYPE', 'OVERSIZED']));
    assert.equal(samples.find((s) => s.name === 'tombstone')!.value, null);
    assert.equal(samples.find((s) => s.name === 'oversized')!.value!.length, ticketTriage.maxMessageBytes + 1);
  });

  it('gets each sample dead-lettered by the validate stage with its reason, naming its field', () => {
    for (const sample of samples) {
      const outcome = validateRecord(record(sample.key, sample.value), validateContext);
      assert.equal(outcome.kind, 'dead-letter', sample.name);
      if (outcome.kind !== 'dead-letter') continue;
      assert.equal(outcome.reason, sample.reason, `${sample.name}: ${outcome.message}`);
      if (sample.field !== null) assert.ok(outcome.message.startsWith(`${sample.field}: `), `${sample.name}: ${outcome.message}`);
      if (sample.eventId !== null && sample.reason !== 'OVERSIZED') assert.equal(outcome.eventId, sample.eventId, sample.name);
    }
  });

  it('is one defect away from a valid event: the SCHEMA_VIOLATION ones fail on their field only', () => {
    for (const sample of samples.filter((s) => s.reason === 'SCHEMA_VIOLATION' && s.field?.startsWith('payload.'))) {
      const envelope = JSON.parse(sample.value!.toString('utf8')) as { event_type: string; payload: Record<string, unknown> };
      const result = parseTicketTriagePayload(envelope.event_type, envelope.payload);
      assert.ok(!result.ok && `payload.${result.field}` === sample.field, sample.name);
    }
  });

  it('refuses a size limit below its largest sample', () => {
    assert.throws(() => malformedSamples({ maxMessageBytes: 10_000 }), RangeError);
  });
});

describe('ticket-triage maxMessageBytes', () => {
  it('lets the largest valid document and ticket through, even when JSON escaping doubles their text', () => {
    const [document] = take(1, 50).filter((e) => e.eventType === 'document_uploaded');
    const [ticket] = take(1, 50).filter((e) => e.eventType === 'jira_ticket_created');
    const worstDocument = { ...document!.envelope, payload: { ...document!.envelope.payload, text: '"'.repeat(65_536), filename: `${'f'.repeat(251)}.pdf` } };
    const worstTicket = { ...ticket!.envelope, payload: { ...ticket!.envelope.payload, description: '\\'.repeat(32_768), summary: 's'.repeat(255) } };
    for (const envelope of [worstDocument, worstTicket]) {
      const value = Buffer.from(JSON.stringify(envelope), 'utf8');
      assert.ok(value.length > 65_536 && value.length < ticketTriage.maxMessageBytes, `${value.length} bytes`);
      assert.equal(validateRecord(record('k', value), validateContext).kind, 'emit');
    }
    assert.ok(ticketTriage.maxMessageBytes <= 1_048_576 / 2, 'well below the broker\'s 1 MiB');
  });
});
