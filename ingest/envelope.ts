/**
 * What the gateway checks at the door, cheaply, before an event is produced:
 * the envelope's shape (PRODUCT.md, Contracts) with the same rules as the
 * validate stage, an event type the pipeline accepts, and the size limit. The
 * payload's contract stays the validate stage's job, so its dead letters keep
 * recording payload problems for every way in.
 */
import { codePointCount } from '../lib/fields.ts';
import { isRecordObject, ownField, typeName } from '../lib/json.ts';
import type { PipelinePlugin } from '../lib/pipeline.ts';
import { MAX_EVENT_ID_CHARS, parseOccurredAt } from '../processors/validate/transform.ts';
import type { IngestErrorCode } from './errors.ts';
import type { Keying } from './keying.ts';

export interface CheckedEvent {
  ok: true;
  eventId: string;
  eventType: string;
  key: string;
  /** The bytes produced to `<p>.raw`: the envelope as JSON, UTF-8. */
  value: Buffer;
}

export interface RejectedEvent {
  ok: false;
  /** The event id when one could be read, so the client can match the result. */
  eventId: string | null;
  code: Extract<IngestErrorCode, 'INVALID_ENVELOPE' | 'UNEXPECTED_EVENT_TYPE' | 'EVENT_TOO_LARGE'>;
  message: string;
}

export type EventCheck = CheckedEvent | RejectedEvent;

function stringProblem(value: unknown): string | null {
  if (value === undefined) return 'required';
  if (typeof value !== 'string') return `expected a string, got ${typeName(value)}`;
  if (!value.isWellFormed()) return 'contains a lone UTF-16 surrogate';
  return null;
}

export function checkEvent(
  event: unknown,
  pipeline: { name: string; plugin: PipelinePlugin },
  keying: Keying,
  maxEventBytes: number,
): EventCheck {
  if (!isRecordObject(event)) {
    return { ok: false, eventId: null, code: 'INVALID_ENVELOPE', message: `an event must be a JSON object (the envelope), got ${typeName(event)}` };
  }
  const rawId = ownField(event, 'event_id');
  let idProblem = stringProblem(rawId);
  if (idProblem === null && (rawId as string).length === 0) idProblem = 'must not be empty';
  if (idProblem === null && codePointCount(rawId as string, MAX_EVENT_ID_CHARS + 1) > MAX_EVENT_ID_CHARS) {
    idProblem = `longer than ${MAX_EVENT_ID_CHARS} characters`;
  }
  if (idProblem !== null) {
    return { ok: false, eventId: null, code: 'INVALID_ENVELOPE', message: `event_id: ${idProblem}; every event needs a unique id (its idempotency key)` };
  }
  const eventId = rawId as string;
  const invalid = (field: string, problem: string): RejectedEvent => ({ ok: false, eventId, code: 'INVALID_ENVELOPE', message: `${field}: ${problem}` });

  const eventType = ownField(event, 'event_type');
  const typeProblem = stringProblem(eventType);
  if (typeProblem !== null) return invalid('event_type', typeProblem);
  const occurredAt = parseOccurredAt(ownField(event, 'occurred_at'));
  if (typeof occurredAt === 'string') return invalid('occurred_at', occurredAt);
  const sourceProblem = stringProblem(ownField(event, 'source'));
  if (sourceProblem !== null) return invalid('source', sourceProblem);
  const payload = ownField(event, 'payload');
  if (!isRecordObject(payload) || Array.isArray(payload)) {
    return invalid('payload', payload === undefined ? 'required' : `expected an object, got ${typeName(payload)}`);
  }
  const types = pipeline.plugin.eventTypes;
  if (!types.includes(eventType as string)) {
    return {
      ok: false,
      eventId,
      code: 'UNEXPECTED_EVENT_TYPE',
      message: `event_type: pipeline ${pipeline.name} accepts ${types.map((t) => JSON.stringify(t)).join(' or ')}, got ${JSON.stringify((eventType as string).slice(0, 100))}`,
    };
  }
  const value = Buffer.from(JSON.stringify(event), 'utf8');
  if (value.length > maxEventBytes) {
    return { ok: false, eventId, code: 'EVENT_TOO_LARGE', message: `the event is ${value.length} bytes as JSON; the limit is ${maxEventBytes} bytes: send large content as a document` };
  }
  const key = keying(eventType as string, payload as Record<string, unknown>, eventId);
  return { ok: true, eventId, eventType: eventType as string, key, value };
}
