import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  MAX_DESCRIPTION_BYTES,
  MAX_TEXT_BYTES,
  normalizeEmail,
  normalizeLine,
  normalizeText,
  parseTicketTriagePayload,
} from '../../pipelines/ticket-triage/payload.ts';
import type { JiraTicket, TicketTriagePayload, UploadedDocument } from '../../pipelines/ticket-triage/types.ts';

const TICKET = 'jira_ticket_created';
const DOCUMENT = 'document_uploaded';
const SHA = 'a'.repeat(64);

const ticket = (extra: Record<string, unknown> = {}) => ({ ticket_key: 'SUP-123', project: 'SUP', summary: 'Charged twice', ...extra });
const document = (extra: Record<string, unknown> = {}) => ({
  document_id: 'doc_1',
  filename: 'invoice.pdf',
  content_type: 'application/pdf',
  sha256: SHA,
  pages: 2,
  text: 'Invoice total due.',
  text_truncated: false,
  ...extra,
});

function parsedTicket(raw: object): JiraTicket {
  const result = parseTicketTriagePayload(TICKET, raw);
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.value.document, null);
  assert.ok(result.value.ticket !== null);
  return result.value.ticket;
}

function parsedDocument(raw: object): UploadedDocument {
  const result = parseTicketTriagePayload(DOCUMENT, raw);
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.value.ticket, null);
  assert.ok(result.value.document !== null);
  return result.value.document;
}

function rejects(eventType: string, raw: object, field: string, message?: RegExp): void {
  const result = parseTicketTriagePayload(eventType, raw);
  assert.equal(result.ok, false, `${JSON.stringify(raw).slice(0, 200)} should be rejected`);
  if (result.ok) return;
  assert.equal(result.field, field, result.message);
  if (message) assert.match(result.message, message);
}

describe('ticket-triage payload: jira_ticket_created', () => {
  it('accepts the minimal ticket and fills absent optional fields', () => {
    const result = parseTicketTriagePayload(TICKET, ticket());
    assert.deepEqual(result, {
      ok: true,
      value: {
        ticket: {
          ticket_key: 'SUP-123',
          project: 'SUP',
          summary: 'Charged twice',
          description: null,
          reporter_email: null,
          labels: [],
          priority_hint: null,
        },
        document: null,
      } satisfies TicketTriagePayload,
      droppedFields: [],
    });
  });

  it('drops unknown fields, document fields included, and lists them sorted', () => {
    const result = parseTicketTriagePayload(TICKET, ticket({ watchers: ['a'], document_id: 'doc_1', __proto__x: 1 }));
    assert.ok(result.ok);
    assert.deepEqual(result.droppedFields, ['__proto__x', 'document_id', 'watchers']);
    assert.ok(!('watchers' in result.value.ticket!));
  });

  it('reads only own fields: an inherited summary is not a summary', () => {
    const raw = Object.create({ summary: 'inherited' }) as Record<string, unknown>;
    Object.assign(raw, { ticket_key: 'SUP-1', project: 'SUP' });
    rejects(TICKET, raw, 'summary', /required/);
  });

  it('checks ticket_key against the Jira key pattern exactly', () => {
    for (const key of ['SUP-1', 'AB-999999999', 'A1-5', 'ABCDEFGHIJ-42']) assert.equal(parsedTicket(ticket({ ticket_key: key })).ticket_key, key);
    for (const key of ['sup-1', 'S-1', 'SUP-0', 'SUP-012', 'ABCDEFGHIJK-1', 'SUP-1234567890', '1SUP-1', 'SUP_1', ' SUP-1', 'SUP-1 ', 'SUP-']) {
      rejects(TICKET, ticket({ ticket_key: key }), 'ticket_key');
    }
    rejects(TICKET, ticket({ ticket_key: 12 }), 'ticket_key', /expected a string, got number/);
    rejects(TICKET, { project: 'SUP', summary: 'x' }, 'ticket_key', /required/);
  });

  it('requires a non-empty project, trimmed', () => {
    assert.equal(parsedTicket(ticket({ project: '  Support \n' })).project, 'Support');
    rejects(TICKET, ticket({ project: '   ' }), 'project', /empty/);
    rejects(TICKET, ticket({ project: null }), 'project', /got null/);
    rejects(TICKET, { ticket_key: 'SUP-1', summary: 'x' }, 'project', /required/);
  });

  it('requires a summary of 1 to 255 characters after trimming, on one line', () => {
    assert.equal(parsedTicket(ticket({ summary: '  Refund\r\nplease\tnow ' })).summary, 'Refund please now');
    assert.equal(parsedTicket(ticket({ summary: ` ${'s'.repeat(255)}  ` })).summary.length, 255);
    // 255 code points, 510 UTF-16 units: characters, not code units, are counted.
    assert.equal([...parsedTicket(ticket({ summary: '😀'.repeat(255) })).summary].length, 255);
    rejects(TICKET, ticket({ summary: 's'.repeat(256) }), 'summary', /255/);
    rejects(TICKET, ticket({ summary: '😀'.repeat(256) }), 'summary', /255/);
    rejects(TICKET, ticket({ summary: ' \t\r\n ' }), 'summary', /empty/);
    rejects(TICKET, ticket({ summary: '\u0000\u0007' }), 'summary', /empty/);
    rejects(TICKET, ticket({ summary: undefined }), 'summary', /required/);
    rejects(TICKET, ticket({ summary: null }), 'summary', /got null/);
    rejects(TICKET, ticket({ summary: ['x'] }), 'summary', /got array/);
    rejects(TICKET, ticket({ summary: 'broken \ud800 surrogate' }), 'summary', /surrogate/);
  });

  it('normalizes the description: CRLF to LF, control characters removed, trimmed; empty means absent', () => {
    assert.equal(parsedTicket(ticket({ description: '  line one\r\nline\u0007 two\r\n\ttabbed\u0000\r\n\r\n' })).description, 'line one\nline two\n\ttabbed');
    assert.equal(parsedTicket(ticket({ description: 'old\rmac' })).description, 'old\nmac');
    assert.equal(parsedTicket(ticket({ description: 'c1\u0085\u009f controls \u007f' })).description, 'c1 controls');
    assert.equal(parsedTicket(ticket({ description: 'ünïcödé ok 😀' })).description, 'ünïcödé ok 😀');
    for (const empty of ['', '  \r\n ', '\u0000', null]) assert.equal(parsedTicket(ticket({ description: empty })).description, null);
    rejects(TICKET, ticket({ description: 42 }), 'description', /got number/);
    rejects(TICKET, ticket({ description: 'x\udc00' }), 'description', /surrogate/);
  });

  it('limits the description to 32 KiB of UTF-8 after normalization', () => {
    assert.equal(parsedTicket(ticket({ description: 'd'.repeat(MAX_DESCRIPTION_BYTES) })).description!.length, MAX_DESCRIPTION_BYTES);
    rejects(TICKET, ticket({ description: 'd'.repeat(MAX_DESCRIPTION_BYTES + 1) }), 'description', /32768 bytes/);
    // 2-byte characters: 16 384 of them are 32 KiB, one more is over.
    assert.ok(parsedTicket(ticket({ description: 'é'.repeat(16_384) })).description);
    rejects(TICKET, ticket({ description: 'é'.repeat(16_385) }), 'description');
    // Removed characters and CRLF pairs do not count against the limit.
    assert.ok(parsedTicket(ticket({ description: `${'d'.repeat(MAX_DESCRIPTION_BYTES)}\u0000\u0000\r\n  ` })).description);
  });

  it('lower-cases and trims reporter_email and rejects an invalid one', () => {
    assert.equal(parsedTicket(ticket({ reporter_email: '  Anna.Smith@ACME.com ' })).reporter_email, 'anna.smith@acme.com');
    assert.equal(parsedTicket(ticket({ reporter_email: null })).reporter_email, null);
    for (const bad of ['', 'anna', 'anna@', '@acme.com', 'a@b@c.com', 'anna smith@acme.com', 'anna@localhost', 'anna@acme.123', 'anna..x@acme.com', 'ånna@acme.com']) {
      rejects(TICKET, ticket({ reporter_email: bad }), 'reporter_email');
    }
    rejects(TICKET, ticket({ reporter_email: 7 }), 'reporter_email', /got number/);
    assert.equal(normalizeEmail(`${'a'.repeat(64)}@acme.com`).ok, true);
    assert.equal(normalizeEmail(`${'a'.repeat(65)}@acme.com`).ok, false);
  });

  it('lower-cases, trims and de-duplicates labels, keeping first-seen order', () => {
    assert.deepEqual(parsedTicket(ticket({ labels: ['Billing', ' URGENT ', 'billing', 'urgent', 'vip'] })).labels, ['billing', 'urgent', 'vip']);
    assert.deepEqual(parsedTicket(ticket({ labels: [] })).labels, []);
    assert.deepEqual(parsedTicket(ticket({ labels: null })).labels, []);
    assert.deepEqual(parsedTicket(ticket({ labels: Array.from({ length: 20 }, (_, i) => `l${i}`) })).labels.length, 20);
    assert.deepEqual(parsedTicket(ticket({ labels: ['l'.repeat(64)] })).labels, ['l'.repeat(64)]);
  });

  it('rejects labels that are not an array of at most 20 non-empty strings of at most 64 characters', () => {
    rejects(TICKET, ticket({ labels: 'billing,urgent' }), 'labels', /expected an array of strings, got string/);
    rejects(TICKET, ticket({ labels: { 0: 'billing' } }), 'labels', /got object/);
    rejects(TICKET, ticket({ labels: Array.from({ length: 21 }, (_, i) => `l${i}`) }), 'labels', /at most 20/);
    // The limit counts labels as sent, duplicates included.
    rejects(TICKET, ticket({ labels: Array.from({ length: 21 }, () => 'same') }), 'labels', /at most 20/);
    rejects(TICKET, ticket({ labels: ['ok', '  '] }), 'labels', /item 1: must not be empty/);
    rejects(TICKET, ticket({ labels: ['l'.repeat(65)] }), 'labels', /64/);
    rejects(TICKET, ticket({ labels: ['ok', 3] }), 'labels', /item 1: expected a string, got number/);
    rejects(TICKET, ticket({ labels: [null] }), 'labels', /got null/);
    rejects(TICKET, ticket({ labels: ['tab\there'] }), 'labels', /control/);
    rejects(TICKET, ticket({ labels: ['\ud800'] }), 'labels', /surrogate/);
  });

  it('accepts priority_hint P1 to P4 exactly', () => {
    for (const hint of ['P1', 'P2', 'P3', 'P4'] as const) assert.equal(parsedTicket(ticket({ priority_hint: hint })).priority_hint, hint);
    assert.equal(parsedTicket(ticket({ priority_hint: null })).priority_hint, null);
    for (const bad of ['p1', 'P0', 'P5', 'urgent', '']) rejects(TICKET, ticket({ priority_hint: bad }), 'priority_hint', /P1, P2, P3, P4/);
    rejects(TICKET, ticket({ priority_hint: 1 }), 'priority_hint', /got number/);
  });
});

describe('ticket-triage payload: document_uploaded', () => {
  it('accepts a document and drops unknown fields, ticket fields included', () => {
    const result = parseTicketTriagePayload(DOCUMENT, document({ summary: 'not a document field', size_bytes: 10 }));
    assert.deepEqual(result, {
      ok: true,
      value: {
        ticket: null,
        document: {
          document_id: 'doc_1',
          filename: 'invoice.pdf',
          content_type: 'application/pdf',
          sha256: SHA,
          pages: 2,
          text: 'Invoice total due.',
          text_truncated: false,
        },
      },
      droppedFields: ['size_bytes', 'summary'],
    });
  });

  it('checks document_id', () => {
    for (const id of ['doc_1', 'a', '3f2a:b.c-d', 'x'.repeat(128)]) assert.equal(parsedDocument(document({ document_id: id })).document_id, id);
    for (const id of ['', '_doc', 'doc 1', 'doc/1', 'x'.repeat(129)]) rejects(DOCUMENT, document({ document_id: id }), 'document_id');
    rejects(DOCUMENT, document({ document_id: undefined }), 'document_id', /required/);
  });

  it('requires a base file name of 1 to 255 characters', () => {
    assert.equal(parsedDocument(document({ filename: '  report 2026.pdf\n' })).filename, 'report 2026.pdf');
    for (const name of ['../../etc/passwd', 'dir\\file.txt', '   ', 'f'.repeat(256)]) rejects(DOCUMENT, document({ filename: name }), 'filename');
  });

  it('accepts the listed content types in any case and without parameters', () => {
    assert.equal(parsedDocument(document({ content_type: 'text/plain; charset=ISO-8859-1' })).content_type, 'text/plain');
    assert.equal(parsedDocument(document({ content_type: ' Application/PDF ' })).content_type, 'application/pdf');
    assert.equal(parsedDocument(document({ content_type: 'text/markdown' })).content_type, 'text/markdown');
    for (const bad of ['image/png', 'application/msword', 'text', '', 'text/plainx']) rejects(DOCUMENT, document({ content_type: bad }), 'content_type');
  });

  it('requires sha256 as 64 lower-case hex digits', () => {
    for (const bad of ['A'.repeat(64), 'a'.repeat(63), 'a'.repeat(65), 'g'.repeat(64), ` ${'a'.repeat(64)}`]) {
      rejects(DOCUMENT, document({ sha256: bad }), 'sha256', /64 lower-case/);
    }
  });

  it('takes pages as an integer of at least 1, or null when unknown', () => {
    assert.equal(parsedDocument(document({ pages: 1 })).pages, 1);
    assert.equal(parsedDocument(document({ pages: null })).pages, null);
    assert.equal(parsedDocument(document({ pages: undefined })).pages, null);
    for (const bad of [0, -1, 2.5, 2 ** 31, Number.NaN]) rejects(DOCUMENT, document({ pages: bad }), 'pages');
    rejects(DOCUMENT, document({ pages: '3' }), 'pages', /got string/);
  });

  it('normalizes the text like a description, allows it empty, and limits it to 64 KiB', () => {
    assert.equal(parsedDocument(document({ text: ' a\r\nb\u0000c ' })).text, 'a\nbc');
    assert.equal(parsedDocument(document({ text: '' })).text, '');
    assert.equal(parsedDocument(document({ text: 't'.repeat(MAX_TEXT_BYTES) })).text.length, MAX_TEXT_BYTES);
    rejects(DOCUMENT, document({ text: 't'.repeat(MAX_TEXT_BYTES + 1) }), 'text', /65536 bytes/);
    rejects(DOCUMENT, document({ text: '€'.repeat(21_846) }), 'text'); // 3 bytes each: 65 538
    rejects(DOCUMENT, document({ text: undefined }), 'text', /required/);
    rejects(DOCUMENT, document({ text: null }), 'text', /got null/);
  });

  it('requires text_truncated as a boolean', () => {
    assert.equal(parsedDocument(document({ text_truncated: true })).text_truncated, true);
    for (const bad of ['false', 0, null]) rejects(DOCUMENT, document({ text_truncated: bad }), 'text_truncated');
    rejects(DOCUMENT, document({ text_truncated: undefined }), 'text_truncated', /required/);
  });
});

describe('ticket-triage payload: event types', () => {
  it('reads a payload by its event type: a ticket is not a document', () => {
    rejects(DOCUMENT, ticket(), 'document_id', /required/);
    rejects(TICKET, document(), 'ticket_key', /required/);
  });

  it('refuses an event type that is not the pipeline\'s without throwing', () => {
    const result = parseTicketTriagePayload('user_signed_up', ticket());
    assert.equal(result.ok, false);
  });
});

describe('text normalization', () => {
  it('is idempotent', () => {
    for (const raw of [' a\r\n\r\nb\u0007 ', '\u0085x\ry\n', '\t\ttabs\tinside\t']) {
      assert.equal(normalizeText(normalizeText(raw)), normalizeText(raw));
      assert.equal(normalizeLine(normalizeLine(raw)), normalizeLine(raw));
    }
    assert.equal(normalizeText('\t\ttabs\tinside\t'), 'tabs\tinside');
  });
});
