import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FIELD_CHARS, fieldText, maskMessage, maskText, PREVIEW_CHARS, previewOf, REDACTED } from '../../processors/sink/mask.ts';

describe('sink: masking personal data in dead letters', () => {
  it('masks email addresses, IP addresses and phone numbers in free text', () => {
    const masked = maskText('payload.email: " John.Smith+x@Mail.Example.co.uk" from 10.1.2.3 / 2001:db8:0:0:1:0:0:1, call +49 151 2345 6789');
    assert.equal(masked, 'payload.email: " [email]" from [ip] / [ip], call [phone]');
  });

  it('leaves timestamps, clock times, ids and numbers alone', () => {
    const text = 'occurred_at 2026-11-28T10:00:00.000Z (1764324000000) event evt-11-42, plan gold, 12.5 days';
    assert.equal(maskText(text), text);
  });

  it('masks the values of personal keys at any depth of a JSON value, keeping the shape', () => {
    const value = {
      event_id: 'e-1',
      occurred_at: 1_764_000_000_000,
      payload: { user_id: 'usr_1', email: 'a@b.co', country: 'de', client: { ip: '1.2.3.4', app_version: '4.2.0' }, referral_code: 'REF-ABC' },
    };
    const preview = previewOf(Buffer.from(JSON.stringify(value)));
    assert.deepEqual(JSON.parse(preview), {
      event_id: 'e-1',
      occurred_at: 1_764_000_000_000,
      payload: { user_id: REDACTED, email: REDACTED, country: 'de', client: { ip: REDACTED, app_version: '4.2.0' }, referral_code: REDACTED },
    });
  });

  it('masks personal keys in JSON that does not parse, including a value cut off at the end', () => {
    const preview = previewOf(Buffer.from('{"event_id":"e2","payload":{"User-Id":"usr_abc","phone": 4915123456789,"email":"x.y@exa'));
    assert.equal(preview, `{"event_id":"e2","payload":{"User-Id":"${REDACTED}","phone": "${REDACTED}","email":"${REDACTED}"`);
  });

  it('masks a decoded Avro record the same way', () => {
    const preview = previewOf(Buffer.from([0, 0, 0, 0, 1]), { event_id: 'e3', payload: { email: 'someone@gmail.com', plan: 'pro' } });
    assert.equal(preview, `{"event_id":"e3","payload":{"email":"${REDACTED}","plan":"pro"}}`);
  });

  it('keeps a preview within its length, and shows bytes that are not text without failing', () => {
    assert.equal(previewOf(Buffer.from(`{"note":"${'a'.repeat(1_000)}"}`)).length, PREVIEW_CHARS);
    const preview = previewOf(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0xc3, 0x28, 0x01, 0x7d]));
    assert.equal(preview, '{"a":\uFFFD(.}');
    assert.equal(previewOf(Buffer.alloc(0)), '');
  });

  it('turns a pipeline-specific decision field into text ClickHouse keeps, masking personal data', () => {
    assert.equal(fieldText('queue', 'billing'), 'billing');
    assert.equal(fieldText('priority_rank', 2), '2');
    assert.equal(fieldText('escalated', false), 'false');
    assert.equal(fieldText('assignee', null), '');
    assert.equal(fieldText('reporter_email', 'bob@example.com'), REDACTED, 'a <who>_email key is personal');
    assert.equal(fieldText('user_id', 'usr_1'), REDACTED);
    assert.equal(fieldText('note', 'call +49 151 2345 6789'), 'call [phone]');
    assert.equal(fieldText('routing', { queue: 'bug', contact: { email: 'a@b.co' }, tags: ['x'] }), `{"queue":"bug","contact":{"email":"${REDACTED}"},"tags":["x"]}`);
    assert.equal(fieldText('text', 'y'.repeat(5_000)).length, FIELD_CHARS);
  });

  it('masks and bounds a dead letter message', () => {
    assert.equal(maskMessage("payload.email: 'Bob@Example.com' is not a valid address"), "payload.email: '[email]' is not a valid address");
    assert.ok(maskMessage('x'.repeat(5_000)).length <= 1_000);
  });
});
