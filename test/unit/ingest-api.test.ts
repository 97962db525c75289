/**
 * The ingest API over HTTP without a broker (fastify's inject, an in-memory
 * event log): every status the API answers, each asserting the error code in
 * the body, what was produced (and what was not), and the OpenAPI document.
 * The same statuses against real Kafka: test/integration/ingest-*.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pipelineByName } from '../../pipelines/registry.ts';
import { buildPdf, garbagePdf } from '../fixtures/ingest/pdf.ts';
import { multipart, signupEvent, testGateway } from '../fixtures/ingest/gateway.ts';

const json = (body: unknown) => ({ 'content-type': 'application/json', payload: typeof body === 'string' ? body : JSON.stringify(body) });

async function post(gw: Awaited<ReturnType<typeof testGateway>>, pipeline: string, key: string | undefined, body: unknown, headers: Record<string, string> = {}) {
  const { payload, 'content-type': contentType } = json(body);
  return gw.app.inject({
    method: 'POST',
    url: `/v1/pipelines/${pipeline}/events`,
    headers: { 'content-type': contentType, ...(key !== undefined && { authorization: `Bearer ${key}` }), ...headers },
    payload,
  });
}

async function upload(gw: Awaited<ReturnType<typeof testGateway>>, pipeline: string, key: string, file: { bytes: Buffer; filename: string; type: string }, metadata?: string) {
  const form = await multipart([
    { name: 'file', value: file.bytes, filename: file.filename, type: file.type },
    ...(metadata === undefined ? [] : [{ name: 'metadata', value: metadata }]),
  ]);
  return gw.app.inject({
    method: 'POST',
    url: `/v1/pipelines/${pipeline}/documents`,
    headers: { authorization: `Bearer ${key}`, 'content-type': form.contentType },
    payload: form.body,
  });
}

const errorCode = (response: { json(): unknown }) => (response.json() as { error: { code: string; message: string } }).error.code;

describe('POST /v1/pipelines/{p}/events', () => {
  it('202: accepts one envelope, produced once to <p>.raw under its key, with its partition and offset', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    const event = signupEvent('e-1');
    const response = await post(gw, 'signup-risk', key, event);
    assert.equal(response.statusCode, 202);
    const { results } = response.json();
    assert.equal(results.length, 1);
    assert.equal(results[0].status, 'accepted');
    assert.equal(results[0].event_id, 'e-1');
    assert.equal(gw.log.produced.length, 1);
    const [produced] = gw.log.produced;
    assert.equal(produced!.topic, 'signup-risk.raw');
    assert.equal(produced!.key, 'u-e-1', "keyed as signup-risk's manifest says (ingest.keying: payload.user_id)");
    assert.deepEqual(JSON.parse(produced!.value.toString('utf8')), event);
    assert.equal(results[0].partition, produced!.partition);
    assert.equal(results[0].offset, produced!.offset);
  });

  it('202 for a batch: one result per event in order; rejected events are not produced, the others are; a repeat in the batch is a duplicate', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    const events = [
      signupEvent('b-1'),
      { event_id: 'b-2', event_type: 'user_signed_up' }, // no occurred_at, source, payload
      signupEvent('b-3', { event_type: 'order_placed' }),
      signupEvent('b-4', { payload: { user_id: 'x', blob: 'y'.repeat(300_000) } }),
      signupEvent('b-1'),
      signupEvent('b-5', { occurred_at: '2026-02-30T00:00:00Z' }),
      42,
      signupEvent('b-6', { payload: { user_id: 'u', plan: 'not-a-plan' } }), // payload rules: the validate stage's job
    ];
    const response = await post(gw, 'signup-risk', key, { events });
    assert.equal(response.statusCode, 202);
    const { results } = response.json();
    assert.deepEqual(
      results.map((r: { event_id: string | null; status: string; error?: { code: string } }) => [r.event_id, r.status, r.error?.code ?? null]),
      [
        ['b-1', 'accepted', null],
        ['b-2', 'rejected', 'INVALID_ENVELOPE'],
        ['b-3', 'rejected', 'UNEXPECTED_EVENT_TYPE'],
        ['b-4', 'rejected', 'EVENT_TOO_LARGE'],
        ['b-1', 'duplicate', null],
        ['b-5', 'rejected', 'INVALID_ENVELOPE'],
        [null, 'rejected', 'INVALID_ENVELOPE'],
        ['b-6', 'accepted', null],
      ],
    );
    assert.match(results[1].error.message, /^occurred_at: required/);
    assert.deepEqual(results[4].offset, results[0].offset);
    // Keyed by payload.user_id (the manifest's ingest.keying).
    assert.deepEqual(
      gw.log.produced.map((p) => p.key),
      ['u-b-1', 'u'],
    );
  });

  it('202 duplicate: an event id accepted earlier answers its original partition and offset and is not produced again', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    const first = (await post(gw, 'signup-risk', key, signupEvent('d-1'))).json().results[0];
    gw.clock.now += 3_600_000;
    const again = await post(gw, 'signup-risk', key, { events: [signupEvent('d-1'), signupEvent('d-2')] });
    assert.equal(again.statusCode, 202);
    const [dup, fresh] = again.json().results;
    assert.deepEqual(dup, { event_id: 'd-1', status: 'duplicate', partition: first.partition, offset: first.offset });
    assert.equal(fresh.status, 'accepted');
    assert.equal(gw.log.produced.filter((p) => p.key === 'u-d-1').length, 1);
    // After the window (24 h) the id is new again.
    gw.clock.now += 86_400_000;
    assert.equal((await post(gw, 'signup-risk', key, signupEvent('d-1'))).json().results[0].status, 'accepted');
    assert.equal(gw.log.produced.filter((p) => p.key === 'u-d-1').length, 2);
  });

  it('concurrent requests with the same event id: one is produced, the other answers duplicate', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    gw.log.hold();
    const a = post(gw, 'signup-risk', key, signupEvent('c-1'));
    const b = post(gw, 'signup-risk', key, signupEvent('c-1'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    gw.log.release();
    const statuses = (await Promise.all([a, b])).map((r) => r.json().results[0].status).sort();
    assert.deepEqual(statuses, ['accepted', 'duplicate']);
    assert.equal(gw.log.produced.length, 1);
  });

  it('401 UNAUTHORIZED: no key, a malformed header, an unknown key, a revoked key', async () => {
    const gw = await testGateway();
    const { key, keyId } = gw.addKey('signup-risk');
    for (const [what, headers] of [
      ['no header', {}],
      ['not Bearer', { authorization: `Basic ${key}` }],
      ['unknown key', { authorization: `Bearer sk_0123456789abcdef_${'A'.repeat(43)}` }],
      ['a key with a wrong secret', { authorization: `Bearer ${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}` }],
    ] as const) {
      const response = await post(gw, 'signup-risk', undefined, signupEvent('x'), headers);
      assert.equal(response.statusCode, 401, what);
      assert.equal(errorCode(response), 'UNAUTHORIZED', what);
    }
    assert.equal((await post(gw, 'signup-risk', key, signupEvent('ok'))).statusCode, 202);
    gw.keys.apply(keyId, null); // the tombstone revoke-key writes
    const revoked = await post(gw, 'signup-risk', key, signupEvent('after'));
    assert.equal(revoked.statusCode, 401);
    assert.equal(errorCode(revoked), 'UNAUTHORIZED');
    assert.equal(gw.log.produced.length, 1);
  });

  it('403 FORBIDDEN: a key of another pipeline', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('ticket-triage');
    const response = await post(gw, 'signup-risk', key, signupEvent('f-1'));
    assert.equal(response.statusCode, 403);
    assert.equal(errorCode(response), 'FORBIDDEN');
    assert.match(response.json().error.message, /ticket-triage/);
    assert.equal(gw.log.produced.length, 0);
  });

  it('404 PIPELINE_UNKNOWN: a name no plugin defines, or an instance whose topics do not exist', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    const unknown = await post(gw, 'no-such-pipeline', key, signupEvent('n-1'));
    assert.equal(unknown.statusCode, 404);
    assert.equal(errorCode(unknown), 'PIPELINE_UNKNOWN');
    const { key: stagingKey } = gw.addKey('signup-risk-staging');
    const noTopics = await post(gw, 'signup-risk-staging', stagingKey, signupEvent('n-2'));
    assert.equal(noTopics.statusCode, 404);
    assert.equal(errorCode(noTopics), 'PIPELINE_UNKNOWN');
    assert.match(noTopics.json().error.message, /sluice topics create --pipeline signup-risk-staging/);
  });

  it('400: not JSON, not UTF-8, not an envelope, an unexpected event type, a malformed batch', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    const cases: Array<[string, unknown, string]> = [
      ['broken JSON', '{"event_id": "x",', 'INVALID_JSON'],
      ['a JSON array', [signupEvent('a-1')], 'INVALID_ENVELOPE'],
      ['an envelope without payload', { ...signupEvent('a-2'), payload: undefined }, 'INVALID_ENVELOPE'],
      ['an empty event id', signupEvent(''), 'INVALID_ENVELOPE'],
      ['an event id of 129 characters', signupEvent('x'.repeat(129)), 'INVALID_ENVELOPE'],
      ['an unexpected event type', signupEvent('a-3', { event_type: 'jira_ticket_created' }), 'UNEXPECTED_EVENT_TYPE'],
      ['events not an array', { events: 'x' }, 'INVALID_BATCH'],
      ['an empty batch', { events: [] }, 'INVALID_BATCH'],
      ['501 events', { events: Array.from({ length: 501 }, (_, i) => signupEvent(`m-${i}`)) }, 'INVALID_BATCH'],
    ];
    for (const [what, body, code] of cases) {
      const response = await post(gw, 'signup-risk', key, body);
      assert.equal(response.statusCode, 400, what);
      assert.equal(errorCode(response), code, what);
    }
    const notUtf8 = await gw.app.inject({
      method: 'POST',
      url: '/v1/pipelines/signup-risk/events',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    });
    assert.equal(notUtf8.statusCode, 400);
    assert.equal(errorCode(notUtf8), 'INVALID_JSON');
    assert.equal(gw.log.produced.length, 0);
  });

  it('413: an event over 256 KiB (EVENT_TOO_LARGE), a request over 5 MiB (REQUEST_TOO_LARGE)', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    const big = await post(gw, 'signup-risk', key, signupEvent('big', { payload: { user_id: 'u', note: 'x'.repeat(262_144) } }));
    assert.equal(big.statusCode, 413);
    assert.equal(errorCode(big), 'EVENT_TOO_LARGE');
    const events = Array.from({ length: 30 }, (_, i) => signupEvent(`huge-${i}`, { payload: { user_id: 'u', note: 'x'.repeat(200_000) } }));
    const huge = await post(gw, 'signup-risk', key, { events });
    assert.equal(huge.statusCode, 413);
    assert.equal(errorCode(huge), 'REQUEST_TOO_LARGE');
    assert.equal(gw.log.produced.length, 0);
  });

  it('415 UNSUPPORTED_MEDIA_TYPE: events that are not application/json', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded']) {
      const response = await gw.app.inject({
        method: 'POST',
        url: '/v1/pipelines/signup-risk/events',
        headers: { authorization: `Bearer ${key}`, 'content-type': contentType },
        payload: JSON.stringify(signupEvent('t-1')),
      });
      assert.equal(response.statusCode, 415, contentType);
      assert.equal(errorCode(response), 'UNSUPPORTED_MEDIA_TYPE', contentType);
    }
    const form = await multipart([{ name: 'file', value: 'hello', filename: 'a.txt', type: 'text/plain' }]);
    const asForm = await gw.app.inject({
      method: 'POST',
      url: '/v1/pipelines/signup-risk/events',
      headers: { authorization: `Bearer ${key}`, 'content-type': form.contentType },
      payload: form.body,
    });
    assert.equal(asForm.statusCode, 415);
    assert.equal(errorCode(asForm), 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('429 RATE_LIMITED with Retry-After over the key\'s rate; accepted again once the wait is over', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk', 10);
    const batch = (prefix: string, n: number) => ({ events: Array.from({ length: n }, (_, i) => signupEvent(`${prefix}-${i}`)) });
    assert.equal((await post(gw, 'signup-risk', key, batch('r1', 8))).statusCode, 202);
    const limited = await post(gw, 'signup-risk', key, batch('r2', 5));
    assert.equal(limited.statusCode, 429);
    assert.equal(errorCode(limited), 'RATE_LIMITED');
    const retryAfter = Number(limited.headers['retry-after']);
    assert.ok(retryAfter >= 1, `Retry-After ${limited.headers['retry-after']}`);
    assert.equal(gw.log.produced.length, 8, 'nothing of the refused request is produced');
    gw.clock.now += retryAfter * 1_000;
    assert.equal((await post(gw, 'signup-risk', key, batch('r2', 5))).statusCode, 202);
    // Another key of the same pipeline has its own budget.
    const { key: other } = gw.addKey('signup-risk', 10);
    assert.equal((await post(gw, 'signup-risk', other, batch('r3', 10))).statusCode, 202);
  });

  it('429 before the body is read once a key has no budget left: a burst over the rate costs no parsing', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk', 10);
    const batch = { events: Array.from({ length: 10 }, (_, i) => signupEvent(`e-${i}`)) };
    assert.equal((await post(gw, 'signup-risk', key, batch)).statusCode, 202);
    // Not JSON at all: answered 400 INVALID_JSON if it were read; with the budget spent it is refused unread.
    const unread = await gw.app.inject({
      method: 'POST',
      url: '/v1/pipelines/signup-risk/events',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      payload: '{"events": [not json',
    });
    assert.equal(unread.statusCode, 429);
    assert.equal(errorCode(unread), 'RATE_LIMITED');
    assert.ok(Number(unread.headers['retry-after']) >= 1);
    gw.clock.now += 1_000;
    const read = await gw.app.inject({
      method: 'POST',
      url: '/v1/pipelines/signup-risk/events',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      payload: '{"events": [not json',
    });
    assert.equal(errorCode(read), 'INVALID_JSON', 'with budget again, the body is read');
  });

  it('503 OVERLOADED with Retry-After when the gateway already holds its in-flight byte budget; nothing produced', async () => {
    const gw = await testGateway({ limits: { maxInflightBytes: 1_048_576 } });
    const { key } = gw.addKey('signup-risk');
    gw.log.hold(); // Kafka slow to acknowledge: the first request stays in flight
    const events = Array.from({ length: 5 }, (_, i) => signupEvent(`o-${i}`, { payload: { user_id: 'u', note: 'x'.repeat(200_000) } }));
    const first = post(gw, 'signup-risk', key, { events });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = await post(gw, 'signup-risk', key, { events: [signupEvent('o-9', { payload: { user_id: 'u', note: 'x'.repeat(200_000) } })] });
    assert.equal(second.statusCode, 503);
    assert.equal(errorCode(second), 'OVERLOADED');
    assert.ok(Number(second.headers['retry-after']) >= 1);
    gw.log.release();
    assert.equal((await first).statusCode, 202);
    assert.deepEqual(
      gw.log.produced.map((p) => JSON.parse(p.value.toString('utf8')).event_id),
      ['o-0', 'o-1', 'o-2', 'o-3', 'o-4'],
    );
    // The budget is given back once a response is sent.
    assert.equal((await post(gw, 'signup-risk', key, signupEvent('o-9'))).statusCode, 202);
  });
});

describe('POST /v1/pipelines/{p}/documents', () => {
  const pdf = (lines: string[][], extra: Partial<Parameters<typeof buildPdf>[0]> = {}) => ({ bytes: buildPdf({ pages: lines, ...extra }), filename: 'report.pdf', type: 'application/pdf' });

  it('202: a PDF: text extracted, pages counted, original stored by content, a document_uploaded event the pipeline\'s payload rules accept', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('ticket-triage');
    const file = pdf([['Invoice INV-2231 was charged twice', 'please refund the duplicate payment'], ['Second page: card ending 4242']]);
    const response = await upload(gw, 'ticket-triage', key, file, JSON.stringify({ source: 'helpdesk', occurred_at: '2026-11-29T08:00:00Z' }));
    assert.equal(response.statusCode, 202, response.body);
    const body = response.json();
    assert.equal(body.status, 'accepted');
    assert.equal(body.pages, 2);
    assert.equal(body.text_truncated, false);
    assert.match(body.sha256, /^[0-9a-f]{64}$/);
    assert.equal(body.document_id, `sha256:${body.sha256}`);
    const stored = join(gw.documentDir, 'sha256', body.sha256.slice(0, 2), body.sha256);
    assert.ok(existsSync(stored));
    assert.deepEqual(readFileSync(stored), file.bytes);

    assert.equal(gw.log.produced.length, 1);
    const event = JSON.parse(gw.log.produced[0]!.value.toString('utf8'));
    assert.equal(event.event_id, body.event_id);
    assert.equal(event.event_type, 'document_uploaded');
    assert.equal(event.source, 'helpdesk');
    assert.equal(event.occurred_at, '2026-11-29T08:00:00Z');
    assert.match(event.payload.text, /Invoice INV-2231 was charged twice\s+please refund the duplicate payment\s+Second page: card ending 4242/);
    const rules = pipelineByName('ticket-triage').plugin.payload('document_uploaded', event.payload);
    assert.ok(rules.ok, JSON.stringify(rules));
    assert.deepEqual(rules.droppedFields, []);
  });

  it('202 duplicate: the same bytes again (under any name) answer the first upload, nothing produced', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('ticket-triage');
    const file = pdf([['My password was leaked']]);
    const first = (await upload(gw, 'ticket-triage', key, file)).json();
    const again = await upload(gw, 'ticket-triage', key, { ...file, filename: 'copy.pdf' });
    assert.equal(again.statusCode, 202);
    assert.deepEqual(again.json(), { ...first, status: 'duplicate' });
    assert.equal(gw.log.produced.length, 1);
  });

  it('202: text/plain and text/markdown; text over 64 KiB is cut and flagged', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('ticket-triage');
    const text = await upload(gw, 'ticket-triage', key, { bytes: Buffer.from('Cannot log in after the update.\r\nError 500.\n'), filename: 'note.txt', type: 'text/plain; charset=utf-8' });
    assert.equal(text.statusCode, 202);
    assert.equal(text.json().pages, null);
    const md = await upload(gw, 'ticket-triage', key, { bytes: Buffer.from('# Feature\n\nPlease add dark mode.\n'), filename: 'idea.md', type: 'application/octet-stream' });
    assert.equal(md.statusCode, 202);
    const long = await upload(gw, 'ticket-triage', key, { bytes: Buffer.from('é'.repeat(40_000)), filename: 'long.txt', type: 'text/plain' });
    assert.equal(long.statusCode, 202);
    assert.equal(long.json().text_truncated, true);
    const events = gw.log.produced.map((p) => JSON.parse(p.value.toString('utf8')));
    assert.equal(events[0].payload.text, 'Cannot log in after the update.\nError 500.');
    assert.equal(events[1].payload.content_type, 'text/markdown');
    assert.ok(Buffer.byteLength(events[2].payload.text) <= 65_536 && Buffer.byteLength(events[2].payload.text) > 65_000);
    for (const event of events) assert.ok(pipelineByName('ticket-triage').plugin.payload('document_uploaded', event.payload).ok);
  });

  it('422: a corrupt PDF (CORRUPT_DOCUMENT), an encrypted one (ENCRYPTED_DOCUMENT), one without text (NO_TEXT); nothing produced or stored', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('ticket-triage');
    const good = buildPdf({ pages: [['hello']] });
    const cases: Array<[string, Buffer, string]> = [
      ['garbage after a PDF header', garbagePdf(), 'CORRUPT_DOCUMENT'],
      ['a PDF cut in half', good.subarray(0, Math.floor(good.length / 2)), 'CORRUPT_DOCUMENT'],
      ['a password-protected PDF', buildPdf({ pages: [['secret']], userPassword: 'hunter2' }), 'ENCRYPTED_DOCUMENT'],
      ['a PDF with drawings only', buildPdf({ pages: [['ignored']], drawingOnly: true }), 'NO_TEXT'],
    ];
    for (const [what, bytes, code] of cases) {
      const response = await upload(gw, 'ticket-triage', key, { bytes, filename: 'x.pdf', type: 'application/pdf' });
      assert.equal(response.statusCode, 422, what);
      assert.equal(errorCode(response), code, what);
    }
    const blank = await upload(gw, 'ticket-triage', key, { bytes: Buffer.from(' \n\t\n'), filename: 'blank.txt', type: 'text/plain' });
    assert.equal(blank.statusCode, 422);
    assert.equal(errorCode(blank), 'NO_TEXT');
    const latin1AsUtf8 = await upload(gw, 'ticket-triage', key, { bytes: Buffer.from('caf\xe9', 'latin1'), filename: 'a.txt', type: 'text/plain' });
    assert.equal(latin1AsUtf8.statusCode, 422);
    assert.equal(errorCode(latin1AsUtf8), 'CORRUPT_DOCUMENT');
    assert.equal(gw.log.produced.length, 0);
    assert.equal(existsSync(join(gw.documentDir, 'sha256')), false);
  });

  it('415: an image (UNSUPPORTED_DOCUMENT_TYPE), a JSON body (UNSUPPORTED_MEDIA_TYPE)', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('ticket-triage');
    const png = await upload(gw, 'ticket-triage', key, { bytes: Buffer.from('89504e470d0a1a0a', 'hex'), filename: 'scan.png', type: 'image/png' });
    assert.equal(png.statusCode, 415);
    assert.equal(errorCode(png), 'UNSUPPORTED_DOCUMENT_TYPE');
    const asJson = await gw.app.inject({
      method: 'POST',
      url: '/v1/pipelines/ticket-triage/documents',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload: '{"text":"hello"}',
    });
    assert.equal(asJson.statusCode, 415);
    assert.equal(errorCode(asJson), 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('413 DOCUMENT_TOO_LARGE over 10 MiB; 400 for a missing file part or bad metadata; 404 DOCUMENTS_NOT_ACCEPTED for a pipeline without documents', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('ticket-triage');
    const big = await upload(gw, 'ticket-triage', key, { bytes: Buffer.alloc(10 * 1_048_576 + 1, 0x61), filename: 'big.txt', type: 'text/plain' });
    assert.equal(big.statusCode, 413);
    assert.equal(errorCode(big), 'DOCUMENT_TOO_LARGE');

    const noFile = await multipart([{ name: 'metadata', value: '{}' }]);
    const missing = await gw.app.inject({
      method: 'POST',
      url: '/v1/pipelines/ticket-triage/documents',
      headers: { authorization: `Bearer ${key}`, 'content-type': noFile.contentType },
      payload: noFile.body,
    });
    assert.equal(missing.statusCode, 400);
    assert.equal(errorCode(missing), 'INVALID_MULTIPART');
    const file = { bytes: Buffer.from('hello'), filename: 'a.txt', type: 'text/plain' };
    for (const metadata of ['{not json', '[1]', '{"owner":"x"}', '{"occurred_at":"yesterday"}']) {
      const response = await upload(gw, 'ticket-triage', key, file, metadata);
      assert.equal(response.statusCode, 400, metadata);
      assert.equal(errorCode(response), 'INVALID_METADATA', metadata);
    }
    const { key: signupKey } = gw.addKey('signup-risk');
    const notHere = await upload(gw, 'signup-risk', signupKey, file);
    assert.equal(notHere.statusCode, 404);
    assert.equal(errorCode(notHere), 'DOCUMENTS_NOT_ACCEPTED');
    assert.equal(gw.log.produced.length, 0);
  });
});

describe('service endpoints', () => {
  it('/openapi.json describes both routes from their schemas, with every status and the bearer key', async () => {
    const gw = await testGateway();
    const response = await gw.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    const doc = response.json();
    assert.match(doc.openapi, /^3\./);
    const events = doc.paths['/v1/pipelines/{pipeline}/events'].post;
    const documents = doc.paths['/v1/pipelines/{pipeline}/documents'].post;
    assert.deepEqual(Object.keys(events.responses).sort(), ['202', '400', '401', '403', '404', '413', '415', '429', '503']);
    assert.deepEqual(Object.keys(documents.responses).sort(), ['202', '400', '401', '403', '404', '413', '415', '422', '429', '503']);
    assert.ok(events.requestBody.content['application/json']);
    assert.ok(documents.requestBody.content['multipart/form-data']);
    assert.equal(doc.components.securitySchemes.apiKey.scheme, 'bearer');
    assert.deepEqual(Object.keys(doc.paths).sort(), ['/v1/pipelines/{pipeline}/documents', '/v1/pipelines/{pipeline}/events']);
  });

  it('/livez, /readyz (503 until ready), /metrics (requests by route, status and pipeline), 404 NOT_FOUND elsewhere', async () => {
    const gw = await testGateway();
    const { key } = gw.addKey('signup-risk');
    assert.equal((await gw.app.inject({ method: 'GET', url: '/livez' })).statusCode, 200);
    gw.ready.ready = false;
    gw.ready.detail = 'restoring the idempotency window';
    const notReady = await gw.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(notReady.statusCode, 503);
    assert.match(notReady.body, /idempotency/);
    gw.ready.ready = true;
    assert.equal((await gw.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    await post(gw, 'signup-risk', key, signupEvent('m-1'));
    await post(gw, 'signup-risk', undefined, signupEvent('m-2'));
    const metrics = (await gw.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /sluice_ingest_requests_total\{[^}]*route="\/v1\/pipelines\/:pipeline\/events",status="202",pipeline="signup-risk"[^}]*\} 1/);
    assert.match(metrics, /sluice_ingest_requests_total\{[^}]*status="401",pipeline="-"[^}]*\} 1/);
    assert.match(metrics, /sluice_ingest_events_total\{[^}]*result="accepted"[^}]*\} 1/);
    assert.match(metrics, /sluice_ingest_produce_duration_seconds_count/);
    assert.match(metrics, /process_resident_memory_bytes/);
    const missing = await gw.app.inject({ method: 'GET', url: '/v2/anything' });
    assert.equal(missing.statusCode, 404);
    assert.equal(errorCode(missing), 'NOT_FOUND');
  });
});
