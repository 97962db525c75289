/**
 * The validate stage's pure logic: raw bytes in, a validated record or a dead
 * letter out. Generic over pipelines: the pipeline's payload rules arrive in the
 * context (for signup-risk, pipelines/signup-risk/payload.ts).
 *
 * Checks, in order: empty value → MALFORMED_PAYLOAD; size → OVERSIZED (before
 * any parsing); registry framing → UNKNOWN_SCHEMA / MALFORMED_PAYLOAD, or the
 * decoded record; otherwise strict UTF-8 JSON object → MALFORMED_PAYLOAD;
 * envelope rules → SCHEMA_VIOLATION; event type → UNEXPECTED_EVENT_TYPE;
 * payload rules → SCHEMA_VIOLATION.
 *
 * Every SCHEMA_VIOLATION message starts with the path of the field at fault
 * followed by ": " (e.g. `payload.email: …`), so operators and tests can read
 * the field without parsing prose.
 */
import type { FramedDecode } from '../../lib/codec.ts';
import { type Clock, deadLetter, type Outcome, type SourceRecord, type ValidatedRecord } from '../../lib/contracts.ts';
import { codePointCount } from '../../lib/fields.ts';
import { isRecordObject, ownField, parseJsonObject, typeName } from '../../lib/json.ts';
import type { PayloadResult, PayloadRules } from '../../lib/pipeline.ts';

export type { FramedDecode, PayloadResult, PayloadRules };

export interface ValidateContext<P = unknown> extends Clock {
  pipeline: string;
  /** The event types the pipeline accepts; any other is UNEXPECTED_EVENT_TYPE. */
  eventTypes: readonly string[];
  maxMessageBytes: number;
  parsePayload: PayloadRules<P>;
  /**
   * Decodes a value in the Confluent wire format (magic byte 0, 4-byte schema
   * id). Synchronous: the runtime resolves schema ids before the batch. It may
   * throw a retriable SluiceError (registry down), which is rethrown so the
   * runtime retries the batch; any other exception becomes a dead letter.
   */
  decodeFramed(value: Buffer): FramedDecode;
  /** An occurred_at this much older than now() is flagged `late`; undefined: never (the manifest's ingest.latenessMs). */
  latenessMs?: number;
  /** An occurred_at this much ahead of now() is flagged `early`; undefined: never (the manifest's ingest.clockSkewMs). */
  clockSkewMs?: number;
}

/** Where an event's occurred_at stands against the pipeline's bounds; null when within them (or unchecked). */
export type Timeliness = 'late' | 'early' | null;

/**
 * A raw event that passed the contract, normalized (lib/contracts.ts), and
 * flagged when its occurred_at is outside the pipeline's bounds: still
 * validated and decided, but visible (validated.avsc's optional `timeliness`).
 */
export type Validated<P> = ValidatedRecord<P> & { timeliness: Timeliness };

export const MAX_EVENT_ID_CHARS = 128;
/** 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the instants RFC 3339 can write. */
export const MIN_OCCURRED_AT_MS = -62_167_219_200_000;
export const MAX_OCCURRED_AT_MS = 253_402_300_799_999;

const FRAMING_HEADER_BYTES = 5;
const DAY_MS = 86_400_000;

/**
 * Never throws for bad data. Anything it does throw is either an outage (a
 * retriable SluiceError from the codec: the chunk is retried) or a defect in
 * sluice, which the runtime dead-letters as PROCESSING_FAILED: a bug of ours is
 * never filed as the producer's MALFORMED_PAYLOAD.
 */
export function validateRecord<P>(source: SourceRecord, ctx: ValidateContext<P>): Outcome<Validated<P>> {
  const bytes = source.value;
  if (bytes === null || bytes.length === 0) {
    return deadLetter('MALFORMED_PAYLOAD', bytes === null ? 'value is null' : 'value is empty');
  }
  if (bytes.length > ctx.maxMessageBytes) {
    return deadLetter('OVERSIZED', `value is ${bytes.length} bytes; the limit is ${ctx.maxMessageBytes} bytes`);
  }

  let record: unknown;
  if (bytes[0] === 0x00 && bytes.length >= FRAMING_HEADER_BYTES) {
    const decoded = ctx.decodeFramed(bytes);
    if (decoded.kind === 'unknown-schema') {
      return deadLetter('UNKNOWN_SCHEMA', `schema id ${decoded.schemaId} is not known to the schema registry`);
    }
    if (decoded.kind === 'undecodable') {
      return deadLetter('MALFORMED_PAYLOAD', `registry-framed value could not be decoded: ${clip(String(decoded.message), 500)}`);
    }
    record = decoded.value;
    if (!isRecordObject(record)) {
      return deadLetter('MALFORMED_PAYLOAD', `registry-framed value decoded to ${typeName(record)}, not a record`);
    }
  } else {
    const parsed = parseJsonObject(bytes);
    if (!parsed.ok) return deadLetter('MALFORMED_PAYLOAD', parsed.message);
    record = parsed.value;
  }
  const envelope = record as object;

  const eventId = ownField(envelope, 'event_id');
  const eventIdProblem = checkEventId(eventId);
  if (eventIdProblem !== null) return deadLetter('SCHEMA_VIOLATION', `event_id: ${eventIdProblem}`);
  const id = eventId as string;
  const violation = (field: string, problem: string) => deadLetter('SCHEMA_VIOLATION', `${field}: ${problem}`, id);

  const eventType = ownField(envelope, 'event_type');
  const eventTypeProblem = checkString(eventType);
  if (eventTypeProblem !== null) return violation('event_type', eventTypeProblem);

  const occurredAt = parseOccurredAt(ownField(envelope, 'occurred_at'));
  if (typeof occurredAt === 'string') return violation('occurred_at', occurredAt);

  const producer = ownField(envelope, 'source');
  const sourceProblem = checkString(producer);
  if (sourceProblem !== null) return violation('source', sourceProblem);

  const payload = ownField(envelope, 'payload');
  if (!isRecordObject(payload)) {
    return violation('payload', payload === undefined ? 'required' : `expected an object, got ${typeName(payload)}`);
  }

  if (!ctx.eventTypes.includes(eventType as string)) {
    const expected = ctx.eventTypes.map((type) => JSON.stringify(type)).join(' or ');
    return deadLetter('UNEXPECTED_EVENT_TYPE', `event_type: pipeline ${ctx.pipeline} expects ${expected}, got ${JSON.stringify(clip(eventType as string))}`, id);
  }

  const rules = ctx.parsePayload(eventType as string, payload);
  if (!rules.ok) return violation(`payload.${rules.field}`, rules.message);

  const validatedAt = ctx.now();
  const validated: Validated<P> = {
    event_id: id,
    event_type: eventType as string,
    occurred_at: occurredAt,
    source: producer as string,
    payload: rules.value,
    // Field names come from the input: lone surrogates would not survive Avro's UTF-8.
    dropped_fields: rules.droppedFields.length === 0 ? [] : rules.droppedFields.map((name) => name.toWellFormed()).sort(),
    validated_at: validatedAt,
    timeliness: timelinessOf(occurredAt, validatedAt, ctx),
  };
  return { kind: 'emit', eventId: id, outputs: [{ to: 'validated', value: validated }] };
}

/** `late` beyond the lateness bound, `early` beyond the clock-skew bound, else null. */
export function timelinessOf(occurredAtMs: number, nowMs: number, bounds: { latenessMs?: number; clockSkewMs?: number }): Timeliness {
  if (bounds.latenessMs !== undefined && occurredAtMs < nowMs - bounds.latenessMs) return 'late';
  if (bounds.clockSkewMs !== undefined && occurredAtMs > nowMs + bounds.clockSkewMs) return 'early';
  return null;
}

/** null when `value` is a well-formed string, otherwise the problem. */
function checkString(value: unknown): string | null {
  if (value === undefined) return 'required';
  if (typeof value !== 'string') return `expected a string, got ${typeName(value)}`;
  if (!value.isWellFormed()) return 'contains a lone UTF-16 surrogate';
  return null;
}

function checkEventId(value: unknown): string | null {
  const problem = checkString(value);
  if (problem !== null) return problem;
  const text = value as string;
  if (text.length === 0) return 'must not be empty';
  // No string has more code points than UTF-16 units: only a long one needs counting.
  if (text.length > MAX_EVENT_ID_CHARS && codePointCount(text, MAX_EVENT_ID_CHARS + 1) > MAX_EVENT_ID_CHARS) {
    return `longer than ${MAX_EVENT_ID_CHARS} characters`;
  }
  return null;
}

/**
 * occurred_at as epoch ms UTC, or the problem as a string. Accepts an integer
 * epoch-ms number (or a Date, as an Avro decoder with logical types yields), or
 * an RFC 3339 date-time string: full date, `T`, full time with seconds, optional
 * fraction (truncated to ms), and `Z` or a ±hh:mm offset. Bare dates, missing
 * seconds or offsets, a space separator and impossible dates are rejected.
 */
export function parseOccurredAt(value: unknown): number | string {
  if (value === undefined) return 'required';
  if (typeof value === 'number') return epochMs(value);
  if (value instanceof Date) return epochMs(value.getTime());
  if (typeof value === 'string') return parseRfc3339(value);
  return `expected an RFC 3339 string or epoch milliseconds, got ${typeName(value)}`;
}

function epochMs(value: number): number | string {
  if (!Number.isInteger(value)) return 'epoch milliseconds must be an integer';
  if (value < MIN_OCCURRED_AT_MS || value > MAX_OCCURRED_AT_MS) {
    return 'epoch milliseconds outside years 0000 to 9999';
  }
  return value === 0 ? 0 : value; // no -0
}

const ZERO = 48;
const NOT_RFC_3339 = 'not an RFC 3339 date-time (e.g. 2026-01-31T12:00:00Z)';

/** The number spelled by `count` ASCII digits of `text` from `at`, or -1 if any is not one. */
function digitsAt(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const digit = text.charCodeAt(i) - ZERO;
    if (!(digit >= 0 && digit <= 9)) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/**
 * `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, T and Z in either case, read
 * character by character (a regular expression and its ten captures cost
 * validate about 2% of its CPU).
 */
function parseRfc3339(text: string): number | string {
  const length = text.length;
  if (length < 20) return NOT_RFC_3339;
  const year = digitsAt(text, 0, 4);
  const month = digitsAt(text, 5, 2);
  const day = digitsAt(text, 8, 2);
  const hour = digitsAt(text, 11, 2);
  const minute = digitsAt(text, 14, 2);
  const second = digitsAt(text, 17, 2);
  const t = text.charCodeAt(10);
  if (
    (year | month | day | hour | minute | second) < 0 ||
    text.charCodeAt(4) !== 45 /* - */ ||
    text.charCodeAt(7) !== 45 ||
    (t !== 84 /* T */ && t !== 116 /* t */) ||
    text.charCodeAt(13) !== 58 /* : */ ||
    text.charCodeAt(16) !== 58
  ) {
    return NOT_RFC_3339;
  }
  let at = 19;
  let millis = 0;
  if (text.charCodeAt(at) === 46 /* . */) {
    at++;
    const from = at;
    // The first three digits are the milliseconds (100, 10, 1 each); the rest are dropped.
    for (let digit = text.charCodeAt(at) - ZERO, weight = 100; digit >= 0 && digit <= 9; digit = text.charCodeAt(++at) - ZERO, weight /= 10) {
      if (weight >= 1) millis += digit * weight;
    }
    if (at === from) return NOT_RFC_3339;
  }
  let offsetMinutes = 0;
  let offsetInRange = true;
  const zone = text.charCodeAt(at);
  if (zone === 90 /* Z */ || zone === 122 /* z */) {
    if (at + 1 !== length) return NOT_RFC_3339;
  } else if (zone === 43 /* + */ || zone === 45 /* - */) {
    const oh = digitsAt(text, at + 1, 2);
    const om = digitsAt(text, at + 4, 2);
    if ((oh | om) < 0 || text.charCodeAt(at + 3) !== 58 || at + 6 !== length) return NOT_RFC_3339;
    offsetMinutes = (zone === 45 ? -1 : 1) * (oh * 60 + om);
    offsetInRange = oh <= 23 && om <= 59;
  } else {
    return NOT_RFC_3339;
  }
  if (month < 1 || month > 12) return 'month out of range';
  if (day < 1 || day > daysInMonth(year, month)) return 'day out of range for the month';
  if (hour > 23 || minute > 59 || second > 60) return 'time of day out of range';
  if (!offsetInRange) return 'UTC offset out of range';
  const ms =
    daysFromCivil(year, month, day) * DAY_MS +
    ((hour * 60 + minute - offsetMinutes) * 60 + second) * 1000 +
    millis;
  if (second === 60) {
    // A leap second is only ever the last second of a UTC month (23:59:60Z);
    // like POSIX time, it maps to the first instant of the next day.
    const before = new Date(ms - 1000);
    const after = new Date(ms);
    const isLeapSecond =
      before.getUTCHours() === 23 && before.getUTCMinutes() === 59 && before.getUTCSeconds() === 59 && after.getUTCDate() === 1;
    if (!isLeapSecond) return 'second 60 is only valid as a leap second at the end of a UTC month';
  }
  return epochMs(ms);
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

/** Input echoed into a dead-letter message is kept short: it travels as a Kafka header. */
function clip(text: string, maxChars = 100): string {
  return text.length > maxChars ? `${text.slice(0, maxChars).toWellFormed()}…` : text;
}
