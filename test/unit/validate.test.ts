import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SluiceError } from '../../lib/errors.ts';
import { createLogger } from '../../lib/log.ts';
import { createRng } from '../../lib/prng.ts';
import { createStageMetrics } from '../../lib/metrics.ts';
import type { PipelineInstance } from '../../lib/pipeline.ts';
import { isValidDomain, normalizeEmail } from '../../lib/fields.ts';
import { COUNTRY_CODES, ISO_3166_1_ALPHA_2, normalizeCountryCode } from '../../pipelines/signup-risk/countries.ts';
import { signupRisk } from '../../pipelines/signup-risk/index.ts';
import type { SignupPayload, ValidatedRecord } from '../../pipelines/signup-risk/types.ts';
import { stageConfigFromEnv } from '../../processors/runtime/config.ts';
import { processIsolating, type StageDefinition, type StageServices } from '../../processors/runtime/runtime.ts';
import { DEAD_LETTER_REASONS, type DeadLetterReason, type Outcome, type SourceRecord } from '../../processors/runtime/types.ts';
import { validateStage } from '../../processors/validate/runner.ts';
import {
  type FramedDecode,
  type Validated,
  type ValidateContext,
  validateRecord,
} from '../../processors/validate/transform.ts';

const NOW_MS = 1_767_225_600_000; // 2026-01-01T00:00:00Z

function source(value: Buffer | string | null): SourceRecord {
  return {
    topic: 'signup-risk.raw',
    partition: 0,
    offset: '42',
    key: Buffer.from('k'),
    value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value,
    headers: {},
    timestampMs: NOW_MS,
  };
}

function context(overrides: Partial<ValidateContext<SignupPayload>> = {}): ValidateContext<SignupPayload> {
  return {
    pipeline: 'signup-risk',
    eventTypes: signupRisk.eventTypes,
    // Room for the hostile inputs below (deep nesting); the size check has tests of its own.
    maxMessageBytes: 1_048_576,
    now: () => NOW_MS,
    parsePayload: signupRisk.payload,
    decodeFramed: (value) => ({ kind: 'unknown-schema', schemaId: value.readUInt32BE(1) }),
    ...overrides,
  };
}

function validPayload(): Record<string, unknown> {
  return {
    user_id: 'u-1',
    email: 'alice@example.com',
    country: 'DE',
    ip_country: 'DE',
    signup_channel: 'web',
    plan: 'free',
    email_domain_age_days: 3650,
    signups_from_ip_24h: 1,
    referral_code: 'FRIEND',
  };
}

function validEvent(payload: Record<string, unknown> = validPayload()): Record<string, unknown> {
  return {
    event_id: 'evt-1',
    event_type: 'user_signed_up',
    occurred_at: '2025-12-31T23:00:00Z',
    source: 'signup-service',
    payload,
  };
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8');
const run = (value: Buffer | string | null, ctx = context()) => validateRecord(source(value), ctx);

function emitted(outcome: Outcome<Validated<SignupPayload>>): ValidatedRecord {
  assert.equal(outcome.kind, 'emit', outcome.kind === 'dead-letter' ? `${outcome.reason}: ${outcome.message}` : '');
  assert.equal(outcome.outputs.length, 1);
  const [output] = outcome.outputs;
  assert.equal(output!.to, 'validated');
  assert.equal(outcome.eventId, output!.value.event_id);
  return output!.value; // Validated<SignupPayload> is the signup-risk ValidatedRecord
}

/** Asserts a dead letter with `reason`; when `field` is given, the message must name it first. */
function deadLettered(outcome: Outcome, reason: DeadLetterReason, field?: string) {
  assert.equal(outcome.kind, 'dead-letter', `expected ${reason}, got an emit`);
  if (outcome.kind !== 'dead-letter') return;
  assert.equal(outcome.reason, reason, outcome.message);
  assert.ok(outcome.message.length > 0);
  if (field !== undefined) assert.ok(outcome.message.startsWith(`${field}: `), `field ${field} not named: ${outcome.message}`);
}

function withEnvelope(field: string, value: unknown): Record<string, unknown> {
  const event = validEvent();
  if (value === undefined) delete event[field];
  else event[field] = value;
  return event;
}

function withPayload(field: string, value: unknown): Record<string, unknown> {
  const payload = validPayload();
  if (value === undefined) delete payload[field];
  else payload[field] = value;
  return validEvent(payload);
}

describe('validate: a good event', () => {
  it('emits the normalized record to validated, stamped with now()', () => {
    const record = emitted(run(json(validEvent())));
    assert.deepEqual(record, {
      event_id: 'evt-1',
      event_type: 'user_signed_up',
      occurred_at: Date.UTC(2025, 11, 31, 23),
      source: 'signup-service',
      payload: {
        user_id: 'u-1',
        email: 'alice@example.com',
        email_domain: 'example.com',
        country: 'DE',
        ip_country: 'DE',
        signup_channel: 'web',
        plan: 'free',
        email_domain_age_days: 3650,
        signups_from_ip_24h: 1,
        referral_code: 'FRIEND',
      },
      dropped_fields: [],
      validated_at: NOW_MS,
      timeliness: null,
    });
  });

  it('normalizes email (trim, lower case) and derives its domain', () => {
    const record = emitted(run(json(withPayload('email', '  Alice.Smith+Tag@Mail.Example.COM\t'))));
    assert.equal(record.payload.email, 'alice.smith+tag@mail.example.com');
    assert.equal(record.payload.email_domain, 'mail.example.com');
  });

  it('upper-cases country codes given in any case', () => {
    const event = validEvent({ ...validPayload(), country: 'de', ip_country: 'uS' });
    const record = emitted(run(json(event)));
    assert.equal(record.payload.country, 'DE');
    assert.equal(record.payload.ip_country, 'US');
    assert.equal(emitted(run(json(withPayload('country', 'xk')))).payload.country, 'XK');
  });

  it('treats null and absent optional fields alike', () => {
    for (const value of [null, undefined]) {
      const payload = validPayload();
      for (const field of ['ip_country', 'email_domain_age_days', 'signups_from_ip_24h', 'referral_code']) {
        if (value === undefined) delete payload[field];
        else payload[field] = value;
      }
      const record = emitted(run(json(validEvent(payload))));
      assert.equal(record.payload.ip_country, null);
      assert.equal(record.payload.email_domain_age_days, null);
      assert.equal(record.payload.signups_from_ip_24h, null);
      assert.equal(record.payload.referral_code, null);
    }
  });

  it('accepts integer bounds of the Avro int fields', () => {
    for (const value of [0, 2_147_483_647]) {
      const record = emitted(run(json(withPayload('signups_from_ip_24h', value))));
      assert.equal(record.payload.signups_from_ip_24h, value);
    }
  });

  it('drops unknown payload fields and lists them sorted', () => {
    const event = validEvent({ ...validPayload(), zeta: 1, alpha: { nested: true }, email_domain: 'spoofed.com' });
    event.extra_envelope_field = 'ignored';
    const record = emitted(run(json(event)));
    assert.deepEqual(record.dropped_fields, ['alpha', 'email_domain', 'zeta']);
    assert.equal(record.payload.email_domain, 'example.com');
    assert.deepEqual(Object.keys(record.payload).sort(), [
      'country',
      'email',
      'email_domain',
      'email_domain_age_days',
      'ip_country',
      'plan',
      'referral_code',
      'signup_channel',
      'signups_from_ip_24h',
      'user_id',
    ]);
  });

  it('accepts a leading UTF-8 byte order mark (RFC 8259 lets parsers ignore it)', () => {
    const value = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json(validEvent())]);
    emitted(run(value));
  });

  it('keeps the last of duplicate keys, as JSON.parse does', () => {
    const text = JSON.stringify(validEvent()).replace('"event_id":"evt-1"', '"event_id":"first","event_id":"evt-2"');
    assert.equal(emitted(run(text)).event_id, 'evt-2');
  });

  it('accepts an event id of exactly 128 characters, counted as code points', () => {
    assert.equal(emitted(run(json(withEnvelope('event_id', 'x'.repeat(128))))).event_id.length, 128);
    emitted(run(json(withEnvelope('event_id', '😀'.repeat(128)))));
  });
});

describe('validate: occurred_at', () => {
  const accepted: Array<[unknown, number]> = [
    ['2026-01-31T12:00:00Z', Date.UTC(2026, 0, 31, 12)],
    ['2026-01-31t12:00:00z', Date.UTC(2026, 0, 31, 12)],
    ['2026-01-31T13:00:00.123456+01:00', Date.UTC(2026, 0, 31, 12, 0, 0, 123)],
    ['2026-01-31T07:30:00.5-04:30', Date.UTC(2026, 0, 31, 12, 0, 0, 500)],
    ['2026-01-31T12:00:00-00:00', Date.UTC(2026, 0, 31, 12)],
    ['2024-02-29T00:00:00Z', Date.UTC(2024, 1, 29)],
    ['2000-02-29T00:00:00Z', Date.UTC(2000, 1, 29)],
    ['0000-01-01T00:00:00Z', -62_167_219_200_000],
    ['9999-12-31T23:59:59.999Z', 253_402_300_799_999],
    ['0099-03-01T00:00:00Z', new Date(0).setUTCFullYear(99, 2, 1)], // no two-digit-year surprises (Date.UTC maps 99 to 1999)
    ['2016-12-31T23:59:60Z', Date.UTC(2017, 0, 1)], // leap second, POSIX-style
    ['1990-12-31T15:59:60-08:00', Date.UTC(1991, 0, 1)],
    [1_767_225_600_000, 1_767_225_600_000],
    [0, 0],
    [-1, -1],
  ];
  for (const [input, expected] of accepted) {
    it(`normalizes ${JSON.stringify(input)} to epoch ms`, () => {
      assert.equal(emitted(run(json(withEnvelope('occurred_at', input)))).occurred_at, expected);
    });
  }

  const rejected: unknown[] = [
    '2026-13-45T00:00:00Z',
    '2026-00-10T00:00:00Z',
    '2026-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z',
    '2026-04-31T00:00:00Z',
    '2026-01-00T00:00:00Z',
    '2026-01-01',
    '2026-01-01T00:00Z',
    '2026-01-01T00:00:00',
    '2026-01-01 00:00:00Z',
    '2026-01-01T24:00:00Z',
    '2026-01-01T23:60:00Z',
    '2026-01-01T12:00:60Z',
    '2026-01-01T00:00:00+24:00',
    '2026-01-01T00:00:00+01:60',
    '2026-01-01T00:00:00.Z',
    '+02026-01-01T00:00:00Z',
    ' 2026-01-01T00:00:00Z',
    'Thu, 01 Jan 2026 00:00:00 GMT',
    '1767225600000',
    '',
    1.5,
    -62_167_219_200_001,
    253_402_300_799_999 + 1,
    Number.MAX_SAFE_INTEGER,
    true,
    null,
    {},
    [],
  ];
  for (const input of rejected) {
    it(`rejects ${JSON.stringify(input)} as SCHEMA_VIOLATION`, () => {
      deadLettered(run(json(withEnvelope('occurred_at', input))), 'SCHEMA_VIOLATION', 'occurred_at');
    });
  }

  it('reads any string as the RFC 3339 grammar does: 20,000 near-misses of valid date-times', () => {
    // The grammar, as a regular expression, and the calendar, from Date: what the parser must agree with.
    const grammar = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;
    const expected = (text: string): number | undefined => {
      const match = grammar.exec(text);
      if (match === null) return undefined;
      const [y, mo, d, h, mi, sec, oh, om] = [1, 2, 3, 4, 5, 6, 9, 10].map((i) => Number(match[i] ?? 0));
      if (mo! < 1 || mo! > 12 || h! > 23 || mi! > 59 || sec! > 59 || oh! > 23 || om! > 59) return undefined;
      const date = new Date(0);
      date.setUTCFullYear(y!, mo! - 1, d!);
      if (date.getUTCDate() !== d || date.getUTCMonth() !== mo! - 1) return undefined;
      date.setUTCHours(h!, mi!, sec!, Number((match[7] ?? '').slice(0, 3).padEnd(3, '0')));
      const ms = date.getTime() - (match[8] === '-' ? -1 : 1) * (oh! * 60 + om!) * 60_000;
      return ms < -62_167_219_200_000 || ms > 253_402_300_799_999 ? undefined : ms;
    };
    const rng = createRng(3_339);
    const two = (max: number) => String(rng.int(0, max)).padStart(2, '0');
    const alphabet = '0123456789-:.TtZz+ x';
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const fraction = rng.pick(['', '.', `.${rng.int(0, 9)}`, `.${rng.int(0, 999_999)}`]);
      const zone = rng.pick(['Z', 'z', `+${two(25)}:${two(61)}`, `-${two(25)}:${two(61)}`, '']);
      let text = `${String(rng.int(0, 9999)).padStart(4, '0')}-${two(13)}-${two(32)}${rng.pick(['T', 't'])}${two(24)}:${two(60)}:${two(59)}${fraction}${zone}`;
      for (let m = rng.int(0, 2); m > 0; m--) {
        const at = rng.int(0, text.length);
        const char = rng.pick([...alphabet]);
        const kind = rng.int(0, 2);
        text = text.slice(0, at) + (kind === 1 ? '' : char) + text.slice(kind === 2 ? at : at + 1);
      }
      const outcome = run(json(withEnvelope('occurred_at', text)));
      const ms = expected(text);
      if (ms === undefined) deadLettered(outcome, 'SCHEMA_VIOLATION', 'occurred_at');
      else {
        assert.equal(emitted(outcome).occurred_at, ms, text);
        accepted++;
      }
    }
    // Both sides of the grammar are exercised, not one.
    assert.ok(accepted > 2_000 && accepted < 18_000, `${accepted} of 20,000 accepted`);
  });

  it('rejects numbers JSON cannot hold exactly (1e400 is Infinity)', () => {
    const text = JSON.stringify(validEvent()).replace('"2025-12-31T23:00:00Z"', '1e400');
    deadLettered(run(text), 'SCHEMA_VIOLATION', 'occurred_at');
  });
});

describe('validate: not a JSON object → MALFORMED_PAYLOAD', () => {
  const cases: Array<[string, Buffer | string | null]> = [
    ['null value', null],
    ['empty value', Buffer.alloc(0)],
    ['invalid JSON', '{"event_id": "e1",'],
    ['trailing garbage', `${JSON.stringify(validEvent())} x`],
    ['JSON array', json([validEvent()])],
    ['JSON number', '42'],
    ['JSON string', '"hello"'],
    ['JSON boolean', 'true'],
    ['JSON null', 'null'],
    ['whitespace only', '   '],
    ['invalid UTF-8 byte', Buffer.concat([json(validEvent()).subarray(0, 20), Buffer.from([0xff]), json(validEvent()).subarray(20)])],
    ['overlong UTF-8', Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d])],
    ['UTF-8-encoded surrogate', Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d])],
    ['truncated multi-byte sequence', Buffer.from([0x7b, 0x22, 0xe2, 0x82, 0x22, 0x3a, 0x31, 0x7d])],
    ['UTF-16 encoded JSON', Buffer.from(JSON.stringify(validEvent()), 'utf16le')],
    ['short value starting with 0x00 (not registry framing)', Buffer.from([0, 1, 2, 3])],
    ['deeply nested arrays', `${'['.repeat(200_000)}${']'.repeat(200_000)}`],
  ];
  for (const [name, value] of cases) {
    it(name, () => deadLettered(run(value), 'MALFORMED_PAYLOAD'));
  }

  it('does not consult the registry for a value under 5 bytes', () => {
    let calls = 0;
    const ctx = context({
      decodeFramed: () => {
        calls += 1;
        return { kind: 'decoded', value: validEvent(), schemaId: 1 };
      },
    });
    deadLettered(run(Buffer.from([0, 0, 0, 1]), ctx), 'MALFORMED_PAYLOAD');
    assert.equal(calls, 0);
  });
});

describe('validate: size', () => {
  it('accepts a value of exactly maxMessageBytes', () => {
    const value = json(validEvent());
    emitted(run(value, context({ maxMessageBytes: value.length })));
  });

  it('dead-letters one byte more as OVERSIZED, before parsing', () => {
    const value = json(validEvent());
    deadLettered(run(value, context({ maxMessageBytes: value.length - 1 })), 'OVERSIZED');
    deadLettered(run(Buffer.alloc(2_000_000, 0xff)), 'OVERSIZED');
  });

  it('checks size before asking the registry', () => {
    const ctx = context({
      maxMessageBytes: 10,
      decodeFramed: () => assert.fail('registry consulted for an oversized value'),
    });
    deadLettered(run(Buffer.alloc(11), ctx), 'OVERSIZED');
  });
});

describe('validate: registry-framed values', () => {
  const framed = (schemaId: number, body = Buffer.from([1, 2, 3])) => {
    const header = Buffer.alloc(5);
    header.writeUInt32BE(schemaId, 1);
    return Buffer.concat([header, body]);
  };

  it('dead-letters an unknown schema id as UNKNOWN_SCHEMA', () => {
    deadLettered(run(framed(999)), 'UNKNOWN_SCHEMA');
  });

  it('dead-letters an undecodable framed value as MALFORMED_PAYLOAD', () => {
    const ctx = context({ decodeFramed: () => ({ kind: 'undecodable', message: 'truncated buffer' }) });
    deadLettered(run(framed(7), ctx), 'MALFORMED_PAYLOAD');
  });

  it('passes the whole framed value to decodeFramed and validates the decoded record', () => {
    const seen: Buffer[] = [];
    const ctx = context({
      decodeFramed: (value): FramedDecode => {
        seen.push(value);
        return { kind: 'decoded', value: withEnvelope('occurred_at', 1_767_225_600_000), schemaId: 7 };
      },
    });
    const value = framed(7);
    const record = emitted(run(value, ctx));
    assert.equal(record.occurred_at, 1_767_225_600_000);
    assert.deepEqual(seen, [value]);
  });

  it('accepts a decoded Avro record built by a class (avsc records are class instances)', () => {
    class Payload {
      user_id = 'u-9';
      email = 'Bob@Example.org';
      country = 'fr';
      ip_country = null;
      signup_channel = 'ios';
      plan = 'pro';
      email_domain_age_days = null;
      signups_from_ip_24h = 2;
      referral_code = null;
    }
    class Envelope {
      event_id = 'evt-avro';
      event_type = 'user_signed_up';
      occurred_at = new Date(Date.UTC(2026, 0, 1));
      source = 'mobile';
      payload = new Payload();
    }
    const record = emitted(run(framed(7), context({ decodeFramed: () => ({ kind: 'decoded', value: new Envelope(), schemaId: 7 }) })));
    assert.equal(record.occurred_at, Date.UTC(2026, 0, 1));
    assert.equal(record.payload.email, 'bob@example.org');
    assert.equal(record.payload.country, 'FR');
    assert.equal(record.payload.signups_from_ip_24h, 2);
  });

  it('dead-letters a decoded value that is not a record as MALFORMED_PAYLOAD', () => {
    for (const value of [null, 'text', 42, [validEvent()], Buffer.from('x')]) {
      deadLettered(run(framed(7), context({ decodeFramed: () => ({ kind: 'decoded', value, schemaId: 7 }) })), 'MALFORMED_PAYLOAD');
    }
  });

  it('never reads envelope fields inherited from a prototype', () => {
    const inherited = Object.create(validEvent()) as object;
    const ctx = context({ decodeFramed: () => ({ kind: 'decoded', value: inherited, schemaId: 7 }) });
    deadLettered(run(framed(7), ctx), 'SCHEMA_VIOLATION', 'event_id');
  });

  it('never reads payload fields inherited from a prototype', () => {
    const event = validEvent(Object.create(validPayload()) as Record<string, unknown>);
    const ctx = context({ decodeFramed: () => ({ kind: 'decoded', value: event, schemaId: 7 }) });
    deadLettered(run(framed(7), ctx), 'SCHEMA_VIOLATION', 'payload.user_id');
  });
});

describe('validate: envelope rules → SCHEMA_VIOLATION naming the field', () => {
  for (const field of ['event_id', 'event_type', 'occurred_at', 'source', 'payload']) {
    it(`missing ${field}`, () => deadLettered(run(json(withEnvelope(field, undefined))), 'SCHEMA_VIOLATION', field));
  }

  const wrong: Array<[string, unknown]> = [
    ['event_id', 42],
    ['event_id', null],
    ['event_id', ''],
    ['event_id', 'x'.repeat(129)],
    ['event_id', ['evt-1']],
    ['event_type', 7],
    ['event_type', null],
    ['source', null],
    ['source', { name: 'svc' }],
    ['payload', null],
    ['payload', [validPayload()]],
    ['payload', 'user_id=u-1'],
    ['payload', 5],
  ];
  for (const [field, value] of wrong) {
    it(`${field} = ${JSON.stringify(value)?.slice(0, 40)}`, () => {
      deadLettered(run(json(withEnvelope(field, value))), 'SCHEMA_VIOLATION', field);
    });
  }

  it('rejects a lone surrogate in an envelope string', () => {
    const text = JSON.stringify(validEvent()).replace('"signup-service"', '"svc\\ud800"');
    deadLettered(run(text), 'SCHEMA_VIOLATION', 'source');
  });

  it('carries the event id on dead letters once it is known', () => {
    const outcome = run(json(withEnvelope('source', 1)));
    assert.equal(outcome.kind === 'dead-letter' ? outcome.eventId : undefined, 'evt-1');
  });
});

describe('validate: event type', () => {
  it('dead-letters another event type as UNEXPECTED_EVENT_TYPE', () => {
    for (const type of ['user_deleted', 'USER_SIGNED_UP', '']) {
      const outcome = run(json(withEnvelope('event_type', type)));
      deadLettered(outcome, 'UNEXPECTED_EVENT_TYPE');
      assert.equal(outcome.kind === 'dead-letter' ? outcome.eventId : undefined, 'evt-1');
    }
  });

  it('keeps the dead-letter message short when the event type is huge (it travels as a header)', () => {
    const outcome = run(json(withEnvelope('event_type', 'x'.repeat(100_000))));
    deadLettered(outcome, 'UNEXPECTED_EVENT_TYPE');
    assert.ok(outcome.kind === 'dead-letter' && outcome.message.length < 1_000);
  });

  it('reports envelope violations before a wrong event type', () => {
    const event = withEnvelope('event_type', 'user_deleted');
    delete event.source;
    deadLettered(run(json(event)), 'SCHEMA_VIOLATION', 'source');
  });

  it('accepts each of the event types the pipeline lists, and hands the type to its payload rules', () => {
    const seen: string[] = [];
    const ctx = context({
      eventTypes: ['user_signed_up', 'user_invited'],
      parsePayload: (eventType, payload) => {
        seen.push(eventType);
        return signupRisk.payload(eventType, payload);
      },
    });
    assert.equal(emitted(run(json(validEvent()), ctx)).event_type, 'user_signed_up');
    assert.equal(emitted(run(json(withEnvelope('event_type', 'user_invited')), ctx)).event_type, 'user_invited');
    assert.deepEqual(seen, ['user_signed_up', 'user_invited']);
    const outcome = run(json(withEnvelope('event_type', 'user_deleted')), ctx);
    deadLettered(outcome, 'UNEXPECTED_EVENT_TYPE', 'event_type');
    assert.deepEqual(seen, ['user_signed_up', 'user_invited'], 'payload rules are not run for another event type');
  });

  it('reports a wrong event type before payload rules', () => {
    const event = withPayload('email', 'nope');
    event.event_type = 'user_deleted';
    deadLettered(run(json(event)), 'UNEXPECTED_EVENT_TYPE');
  });
});

describe('validate: signup-risk payload rules → SCHEMA_VIOLATION naming the field', () => {
  for (const field of ['user_id', 'email', 'country', 'signup_channel', 'plan']) {
    it(`missing ${field}`, () => deadLettered(run(json(withPayload(field, undefined))), 'SCHEMA_VIOLATION', `payload.${field}`));
    it(`null ${field}`, () => deadLettered(run(json(withPayload(field, null))), 'SCHEMA_VIOLATION', `payload.${field}`));
  }

  const bad: Array<[string, unknown]> = [
    ['user_id', ''],
    ['user_id', 12345],
    ['email', 42],
    ['email', ''],
    ['email', '   '],
    ['email', 'alice'],
    ['email', 'alice@'],
    ['email', '@example.com'],
    ['email', 'alice@@example.com'],
    ['email', 'alice@bob@example.com'],
    ['email', 'alice@localhost'],
    ['email', 'alice@example'],
    ['email', 'alice@-example.com'],
    ['email', 'alice@example-.com'],
    ['email', 'alice@exa_mple.com'],
    ['email', 'alice@example..com'],
    ['email', 'alice@example.com.'],
    ['email', 'alice@1.2.3.4'],
    ['email', 'alice@[127.0.0.1]'],
    ['email', '.alice@example.com'],
    ['email', 'alice.@example.com'],
    ['email', 'al..ice@example.com'],
    ['email', 'al ice@example.com'],
    ['email', '"alice"@example.com'],
    ['email', 'alicé@example.com'],
    ['email', 'alice@exämple.com'],
    ['email', '\u212Aate@example.com'], // Kelvin sign lower-cases to ASCII k
    ['email', `${'a'.repeat(65)}@example.com`],
    ['email', `a@${'b'.repeat(64)}.com`],
    ['email', `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.com`], // 265 chars
    ['country', 'XX'],
    ['country', 'ZZ'],
    ['country', 'UK'],
    ['country', 'EU'],
    ['country', 'USA'],
    ['country', 'u'],
    ['country', ' DE'],
    ['country', 'D\u0395'], // Greek capital epsilon
    ['country', 276],
    ['ip_country', 'XX'],
    ['ip_country', ''],
    ['ip_country', 1],
    ['signup_channel', 'Web'],
    ['signup_channel', 'WEB'],
    ['signup_channel', 'email'],
    ['signup_channel', ''],
    ['signup_channel', 1],
    ['plan', 'Free'],
    ['plan', 'gold'],
    ['plan', ['free']],
    ['email_domain_age_days', -1],
    ['email_domain_age_days', 1.5],
    ['email_domain_age_days', '30'],
    ['email_domain_age_days', true],
    ['email_domain_age_days', 2_147_483_648],
    ['signups_from_ip_24h', -3],
    ['signups_from_ip_24h', 1e20],
    ['signups_from_ip_24h', { count: 1 }],
    ['referral_code', 5],
    ['referral_code', false],
  ];
  for (const [field, value] of bad) {
    it(`${field} = ${JSON.stringify(value)?.slice(0, 50)}`, () => {
      deadLettered(run(json(withPayload(field, value))), 'SCHEMA_VIOLATION', `payload.${field}`);
    });
  }

  it('accepts the longest valid address (64-char local part, 254 in all)', () => {
    const email = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}.com`;
    assert.equal(email.length, 254);
    assert.equal(emitted(run(json(withPayload('email', email)))).payload.email, email);
  });

  it('accepts punycode domains and dot-atom special characters', () => {
    const email = "o'brien+x_y.z!#$%&*/=?^`{|}~-@xn--bcher-kva.example";
    assert.equal(emitted(run(json(withPayload('email', email)))).payload.email_domain, 'xn--bcher-kva.example');
  });

  it('rejects a lone surrogate in a payload string', () => {
    const text = JSON.stringify(validEvent()).replace('"u-1"', '"u-\\udc00"');
    deadLettered(run(text), 'SCHEMA_VIOLATION', 'payload.user_id');
  });

  it('rejects an integer field too large for JSON numbers (1e400)', () => {
    const text = JSON.stringify(validEvent()).replace('"email_domain_age_days":3650', '"email_domain_age_days":1e400');
    deadLettered(run(text), 'SCHEMA_VIOLATION', 'payload.email_domain_age_days');
  });
});

describe('validate: country list', () => {
  it('holds the 249 assigned ISO 3166-1 alpha-2 codes, plus XK', () => {
    assert.equal(ISO_3166_1_ALPHA_2.size, 249);
    for (const code of ['DE', 'US', 'GB', 'SS', 'BQ', 'CW', 'SX', 'AX', 'AQ', 'UM']) assert.ok(ISO_3166_1_ALPHA_2.has(code), code);
    for (const code of ['UK', 'EU', 'AN', 'YU', 'CS', 'XX']) assert.ok(!COUNTRY_CODES.has(code), code);
    assert.ok(COUNTRY_CODES.has('XK'));
  });
});

describe('validate: hostile JSON', () => {
  const pollutionProbe = 'sluicePolluted';
  const assertNotPolluted = () => {
    assert.equal(Object.hasOwn(Object.prototype, pollutionProbe), false);
    assert.equal(({} as Record<string, unknown>)[pollutionProbe], undefined);
  };

  it('does not let __proto__, constructor or prototype keys reach a prototype', () => {
    const hostile = `{"${pollutionProbe}": true}`;
    const text =
      `{"__proto__": ${hostile}, "constructor": {"prototype": ${hostile}}, "prototype": ${hostile},` +
      ` "event_id": "evt-1", "event_type": "user_signed_up", "occurred_at": 0, "source": "s",` +
      ` "payload": {"__proto__": ${hostile}, "constructor": {"prototype": ${hostile}}, "prototype": ${hostile},` +
      ` "user_id": "u", "email": "a@b.co", "country": "DE", "signup_channel": "api", "plan": "pro"}}`;
    const record = emitted(run(text));
    assertNotPolluted();
    assert.deepEqual(record.dropped_fields, ['__proto__', 'constructor', 'prototype']);
    assert.equal(Object.getPrototypeOf(record), Object.prototype);
    assert.equal(Object.getPrototypeOf(record.payload), Object.prototype);
    assert.equal(Object.hasOwn(record.payload, pollutionProbe), false);
    assert.equal((record.payload as unknown as Record<string, unknown>)[pollutionProbe], undefined);
  });

  it('does not take envelope fields from a __proto__ key', () => {
    deadLettered(run(`{"__proto__": ${JSON.stringify(validEvent())}}`), 'SCHEMA_VIOLATION', 'event_id');
    assertNotPolluted();
  });

  it('survives a payload field nested 100 000 levels deep, and drops it', () => {
    const deep = `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`;
    const text = JSON.stringify(validEvent()).replace('"user_id":"u-1"', `"user_id":"u-1","deep":${deep}`);
    assert.deepEqual(emitted(run(text)).dropped_fields, ['deep']);
  });

  it('makes dropped field names well-formed for Avro', () => {
    const text = JSON.stringify(validEvent()).replace('"user_id":"u-1"', '"user_id":"u-1","x\\ud800":1');
    assert.deepEqual(emitted(run(text)).dropped_fields, ['x\ufffd']);
  });
});

describe('validate: a defect in sluice is not the producer\'s fault', () => {
  const logger = createLogger({}, 'silent');

  /**
   * The validate stage as its runner builds it, for signup-risk with `payload`
   * as payload rules and `decodeSync` as the registry adapter, and the
   * outcomes the runtime makes of `values` (processIsolating, as in production).
   */
  async function runStage(
    values: Buffer[],
    options: { payload?: typeof signupRisk.payload; decodeSync?: (value: Buffer) => FramedDecode; env?: NodeJS.ProcessEnv } = {},
  ): Promise<Outcome[]> {
    const stage = await buildStage(options);
    return processIsolating(stage, values.map((value) => ({ source: source(value), value })), logger);
  }

  it('lets an unexpected exception in the payload rules propagate, rather than blaming the data', () => {
    const ctx = context({
      parsePayload: () => {
        throw new TypeError('boom');
      },
    });
    assert.throws(() => run(json(validEvent()), ctx), (error) => error instanceof TypeError && error.message === 'boom');
  });

  it('which the runtime dead-letters as PROCESSING_FAILED with the error code, never MALFORMED_PAYLOAD, and only for that record', async () => {
    const outcomes = await runStage([json(validEvent()), json(withPayload('user_id', 'poison')), json(withEnvelope('event_id', 'evt-3'))], {
      payload: (eventType, payload) => {
        if ((payload as { user_id?: unknown }).user_id === 'poison') throw new TypeError('boom');
        return signupRisk.payload(eventType, payload);
      },
    });
    assert.deepEqual(
      outcomes.map((o) => (o.kind === 'emit' ? o.eventId : o.reason)),
      ['evt-1', 'PROCESSING_FAILED', 'evt-3'],
    );
    const failed = outcomes[1]!;
    assert.ok(failed.kind === 'dead-letter');
    assert.equal(failed.errorCode, 'TypeError');
    assert.match(failed.message, /boom/);
  });

  it('lets an unprintable thrown value propagate as is, and the runtime dead-letters it as PROCESSING_FAILED', async () => {
    const unprintable = {
      toString() {
        throw new Error('nope');
      },
    };
    const throwing = () => {
      throw unprintable;
    };
    assert.throws(
      () => run(json(validEvent()), context({ parsePayload: throwing })),
      (error) => error === unprintable,
    );
    const outcomes = await runStage([json(validEvent())], { payload: throwing });
    assert.equal(outcomes.length, 1);
    assert.ok(outcomes[0]!.kind === 'dead-letter');
    assert.equal(outcomes[0]!.reason, 'PROCESSING_FAILED');
  });

  it('rethrows a retriable SluiceError from the registry adapter so the runtime retries the chunk', async () => {
    const decodeSync = () => {
      throw new SluiceError('REGISTRY_UNAVAILABLE', 'registry down');
    };
    const isOutage = (error: unknown) => error instanceof SluiceError && error.code === 'REGISTRY_UNAVAILABLE';
    assert.throws(() => run(Buffer.from([0, 0, 0, 0, 1, 2]), context({ decodeFramed: decodeSync })), isOutage);
    await assert.rejects(runStage([json(validEvent()), Buffer.from([0, 0, 0, 0, 1, 2])], { decodeSync }), isOutage);
  });

  it('dead-letters a non-retriable error from the registry adapter as PROCESSING_FAILED, not retried', async () => {
    const decodeSync = () => {
      throw new SluiceError('SCHEMA_NOT_REGISTERED', 'odd');
    };
    assert.throws(
      () => run(Buffer.from([0, 0, 0, 0, 1, 2]), context({ decodeFramed: decodeSync })),
      (error) => error instanceof SluiceError && error.code === 'SCHEMA_NOT_REGISTERED',
    );
    const outcomes = await runStage([Buffer.from([0, 0, 0, 0, 1, 2])], { decodeSync });
    assert.ok(outcomes[0]!.kind === 'dead-letter');
    assert.equal(outcomes[0]!.reason, 'PROCESSING_FAILED');
    assert.equal(outcomes[0]!.errorCode, 'SCHEMA_NOT_REGISTERED');
  });
});

describe('validate: fuzz (seeded)', () => {
  /** mulberry32: a tiny deterministic PRNG so failures reproduce. */
  function prng(seed: number) {
    let state = seed >>> 0;
    return () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
    };
  }

  const reasons: ReadonlySet<string> = new Set(DEAD_LETTER_REASONS);

  function check(value: Buffer, ctx: ValidateContext<SignupPayload>, label: string) {
    let outcome: Outcome<Validated<SignupPayload>>;
    try {
      outcome = validateRecord(source(value), ctx);
    } catch (error) {
      assert.fail(`${label}: threw ${String(error)} for ${value.toString('hex').slice(0, 400)}`);
    }
    if (outcome.kind === 'dead-letter') {
      assert.ok(reasons.has(outcome.reason), `${label}: unknown reason ${outcome.reason}`);
      assert.equal(typeof outcome.message, 'string');
      return outcome.reason;
    }
    assert.equal(outcome.kind, 'emit', label);
    const record = outcome.outputs[0]!.value;
    assert.ok(record.event_id.length > 0 && Number.isInteger(record.occurred_at), label);
    assert.ok(/^[a-z0-9.!#$%&'*+/=?^_`{|}~@-]+$/.test(record.payload.email), label);
    assert.ok(COUNTRY_CODES.has(record.payload.country), label);
    return 'emit';
  }

  it('random byte strings, some registry-framed, never throw', () => {
    const random = prng(0x5eed);
    const junk = (): unknown => [null, 'x', 7, [], {}, validEvent(), { event_id: 1 }][Math.floor(random() * 7)];
    const ctx = context({
      decodeFramed: (): FramedDecode => {
        const roll = random();
        if (roll < 0.3) return { kind: 'unknown-schema', schemaId: 1 };
        if (roll < 0.5) return { kind: 'undecodable', message: 'bad' };
        return { kind: 'decoded', value: junk(), schemaId: 1 };
      },
    });
    for (let i = 0; i < 3_000; i += 1) {
      const bytes = Buffer.alloc(Math.floor(random() * 64));
      for (let j = 0; j < bytes.length; j += 1) bytes[j] = Math.floor(random() * 256);
      if (random() < 0.3 && bytes.length > 0) bytes[0] = 0;
      check(bytes, ctx, `bytes #${i}`);
    }
  });

  it('random mutations of a valid event never throw, and some still pass', () => {
    const random = prng(0xc0ffee);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const tokens = ['{', '}', '[', ']', '"', ':', ',', '\\', '\\u', '\\ud800', '0', '-', 'e', '1e999', 'null', '__proto__', '\u0000', 'é', '😀', ' '];
    const values: unknown[] = [null, true, 0, -1, 1.5, 2 ** 53, '', 'x', 'DE', 'de', 'web', 'Web', 'a@b.co', '2026-02-30T00:00:00Z', [], {}, { __proto__: null }];
    const fields = [...Object.keys(validEvent()), ...Object.keys(validPayload()), '__proto__', 'constructor'];
    const seen = new Set<string>();
    for (let i = 0; i < 3_000; i += 1) {
      let text: string;
      const roll = random();
      if (roll < 0.5) {
        const event = validEvent();
        const target = random() < 0.5 ? event : (event.payload as Record<string, unknown>);
        const field = pick(fields);
        if (random() < 0.3) delete target[field];
        else Object.defineProperty(target, field, { value: pick(values), enumerable: true, writable: true, configurable: true });
        text = JSON.stringify(event);
      } else {
        text = JSON.stringify(validEvent());
        for (let edits = 1 + Math.floor(random() * 3); edits > 0; edits -= 1) {
          const at = Math.floor(random() * text.length);
          const op = random();
          if (op < 0.4) text = text.slice(0, at) + pick(tokens) + text.slice(at);
          else if (op < 0.7) text = text.slice(0, at) + text.slice(at + 1 + Math.floor(random() * 8));
          else text = text.slice(0, at) + pick(tokens) + text.slice(at + 1);
        }
      }
      let bytes = Buffer.from(text, 'utf8');
      if (random() < 0.1) {
        bytes = Buffer.from(bytes);
        bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      }
      seen.add(check(bytes, context(), `mutation #${i}`));
    }
    // The loop must exercise both paths, or it proves nothing.
    assert.ok(seen.has('emit'));
    assert.ok(seen.has('MALFORMED_PAYLOAD'));
    assert.ok(seen.has('SCHEMA_VIOLATION'));
  });
});

describe('validate: config', () => {
  /** The validate stage's own settings, parsed as the CLI parses them (with connections and runtime settings). */
  const settingsOf = (env: NodeJS.ProcessEnv) => stageConfigFromEnv('validate', validateStage.settings(signupRisk), env);

  /** A valid event of exactly `bytes` bytes (padded with an unknown payload field, which validate drops). */
  function eventOfBytes(bytes: number): Buffer {
    const padded = (length: number) => json(validEvent({ ...validPayload(), padding: 'x'.repeat(length) }));
    const value = padded(bytes - padded(0).length);
    assert.equal(value.length, bytes);
    return value;
  }

  async function reasonsAt(env: NodeJS.ProcessEnv, sizes: number[]): Promise<string[]> {
    const stage = await buildStage({ env });
    const outcomes = await stage.process(sizes.map((size) => ({ source: source(eventOfBytes(size)), value: null })));
    return outcomes.map((o) => (o.kind === 'emit' ? 'emit' : o.reason));
  }

  it("defaults maxMessageBytes to the pipeline's 256 KiB", async () => {
    assert.equal(settingsOf({}).validate.SLUICE_MAX_MESSAGE_BYTES, undefined);
    assert.equal(signupRisk.maxMessageBytes, 262_144);
    assert.deepEqual(await reasonsAt({}, [262_144, 262_145]), ['emit', 'OVERSIZED']);
  });

  it('reads SLUICE_MAX_MESSAGE_BYTES, which overrides the pipeline\'s limit', async () => {
    assert.equal(settingsOf({ SLUICE_MAX_MESSAGE_BYTES: '2048' }).validate.SLUICE_MAX_MESSAGE_BYTES, 2048);
    assert.deepEqual(await reasonsAt({ SLUICE_MAX_MESSAGE_BYTES: '2048' }, [2048, 2049]), ['emit', 'OVERSIZED']);
  });

  it('rejects empty, zero, negative, non-numeric and too large values with CONFIG_INVALID', () => {
    for (const value of ['', '0', '-5', '1.5', 'lots', '1e6', '900001']) {
      assert.throws(
        () => settingsOf({ SLUICE_MAX_MESSAGE_BYTES: value }),
        (error) => error instanceof SluiceError && error.code === 'CONFIG_INVALID',
        value,
      );
    }
  });
});

/**
 * The validate stage as its runner (processors/validate/runner.ts) builds it
 * for signup-risk, with the payload rules, registry adapter and environment
 * given; what it is not given it never touches.
 */
async function buildStage(
  options: { payload?: typeof signupRisk.payload; decodeSync?: (value: Buffer) => FramedDecode; env?: NodeJS.ProcessEnv } = {},
): Promise<StageDefinition<Buffer | null>> {
  const plugin = { ...signupRisk, payload: options.payload ?? signupRisk.payload };
  const pipeline: PipelineInstance = { name: 'signup-risk', plugin, owners: plugin.owners };
  const services = {
    pipeline,
    catalog: { decodeSync: options.decodeSync ?? ((value: Buffer) => ({ kind: 'unknown-schema', schemaId: value.readUInt32BE(1) })) },
    control: {},
    logger: createLogger({}, 'silent'),
    metrics: createStageMetrics({ pipeline: 'signup-risk', stage: 'validate', team: 'test' }),
    now: () => NOW_MS,
  } as unknown as StageServices<PipelineInstance>;
  const settings = stageConfigFromEnv('validate', validateStage.settings(plugin), options.env ?? {});
  return (await validateStage.factory(settings)(services)) as StageDefinition<Buffer | null>;
}

describe('field checks at their edges (hand-written loops instead of regular expressions)', () => {
  it('country codes: each assigned code in any ASCII casing, nothing that only case-folds into one', () => {
    for (const code of COUNTRY_CODES) {
      for (const spelling of [code, code.toLowerCase(), code[0] + code[1]!.toLowerCase(), code[0]!.toLowerCase() + code[1]]) {
        assert.equal(normalizeCountryCode(spelling), code, spelling);
      }
    }
    // Dotless i and the long s upper-case to ASCII I and S: still not country codes.
    for (const lookalike of ['\u0131t', 's\u0131', '\u017fe', 'D\u0395', 'de ', ' de', 'd', 'deu', '', 'uk']) {
      assert.equal(normalizeCountryCode(lookalike), null, JSON.stringify(lookalike));
    }
  });

  it('domains: label and total lengths, hyphens, all-digit labels', () => {
    const label63 = 'a'.repeat(63);
    const long253 = `${label63}.${label63}.${label63}.${'b'.repeat(61)}`; // 253 characters
    assert.equal(long253.length, 253);
    assert.equal(isValidDomain(long253), true);
    assert.equal(isValidDomain(`x${long253}`), false, '254 characters');
    assert.equal(isValidDomain(`${label63}.com`), true);
    assert.equal(isValidDomain(`${label63}a.com`), false, 'a label of 64');
    assert.equal(isValidDomain('123.com'), true, 'only the last label must not be all digits');
    assert.equal(isValidDomain('example.123'), false);
    assert.equal(isValidDomain('example.c0m'), true);
    assert.equal(isValidDomain('a-b.c-d'), true);
    for (const bad of ['', '.', 'com', '.com', 'com.', 'a..com', '-a.com', 'a-.com', 'a.-com', 'a.com-', 'A.com', 'a_b.com', 'a b.com', 'exämple.com']) {
      assert.equal(isValidDomain(bad), false, JSON.stringify(bad));
    }
  });

  it('emails: dot-atom local parts, one @, the same messages as before', () => {
    assert.deepEqual(normalizeEmail(" O'Brien+x{1}@Example.COM "), { ok: true, email: "o'brien+x{1}@example.com", domain: 'example.com' });
    assert.deepEqual(normalizeEmail('a@b@example.com'), { ok: false, message: 'must contain exactly one @' });
    assert.deepEqual(normalizeEmail('example.com'), { ok: false, message: 'must contain exactly one @' });
    assert.deepEqual(normalizeEmail('a\u00a0b@example.com'), { ok: false, message: 'must be printable ASCII without spaces' });
    for (const local of ['', '.a', 'a.', 'a..b', 'a(b)', 'a,b', 'a"b', 'a\\b']) {
      assert.deepEqual(normalizeEmail(`${local}@example.com`), { ok: false, message: 'local part must be 1-64 characters of dot-atom text' }, JSON.stringify(local));
    }
  });
});
