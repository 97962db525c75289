/**
 * The ticket-triage payload rules: parse and normalize the payload of a
 * `jira_ticket_created` or `document_uploaded` event, parsed JSON or a decoded
 * Avro record alike. Never throws for bad data: the first problem found is
 * returned with the field at fault.
 *
 * Rules the contract states, and the decisions it leaves open (marked *):
 * - `null` for an optional field means absent; for a required field it is a
 *   wrong type. Unknown fields are dropped and listed in droppedFields.
 * - Every string must be well-formed Unicode (no lone surrogates): Avro writes
 *   UTF-8, which cannot carry them.
 * - Long text (`description`, `text`) is normalized: CRLF and* lone CR become
 *   LF (a lone CR is a line break in old Mac text; removing it would glue two
 *   words together), control characters other than tab and LF (C0, DEL, C1)
 *   are removed, then the result is trimmed. Size limits are UTF-8 bytes of the
 *   normalized text*, what is stored and sent on.
 * - One-line text* (`summary`, `project`, `filename`) is normalized the same
 *   way and then tabs and line breaks become spaces. Lengths are in code points*.
 *
 * jira_ticket_created:
 * - `ticket_key`: required, `^[A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8}$` exactly as
 *   given* (an identifier is not repaired).
 * - `project`: required, 1–255* characters after normalization.
 * - `summary`: required, 1–255 characters after normalization.
 * - `description`: optional, at most 32 KiB; empty after normalization* → null
 *   (Jira sends "" for "no description").
 * - `reporter_email`: optional, a syntactically valid address, trimmed and
 *   lower-cased (see normalizeEmail); "" is an error*, not "absent".
 * - `labels`: optional array (absent or null → []*) of at most 20 items, each a
 *   string of 1–64 characters after trimming*, without control characters*;
 *   lower-cased, de-duplicated keeping first-seen order*. The 20 counts the
 *   items as sent*, before de-duplication.
 * - `priority_hint`: optional, exactly `P1` `P2` `P3` or `P4`* (case-sensitive,
 *   as an enum symbol would be).
 *
 * document_uploaded* (produced by the ingest API, so its fields are exact):
 * - `document_id`: required, `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`.
 * - `filename`: required, 1–255 characters after normalization, a base name:
 *   no `/` or `\` (a path means the client sent something it should not).
 * - `content_type`: required, a media type the ingest API extracts text from:
 *   application/pdf, text/plain, text/markdown; compared case-insensitively and
 *   without parameters (`text/plain; charset=utf-8` → `text/plain`: the text
 *   arrives as UTF-8 whatever the file's charset was).
 * - `sha256`: required, 64 lower-case hex digits (the ingest API's own hash of
 *   the file bytes; upper case would mean another producer, worth surfacing).
 * - `pages`: optional (absent or null: unknown, e.g. text files), else an
 *   integer from 1 to 2^31 - 1 (Avro int).
 * - `text`: required, the extracted text, at most 64 KiB after normalization;
 *   may be empty (a scanned PDF without a text layer is still a document).
 * - `text_truncated`: required boolean: the ingest API cut the text at 64 KiB.
 */
import {
  codePointCount,
  INT32_MAX,
  normalizeEmail,
  oneOf,
  optionalString,
  readPayload,
  Reject,
  requiredString,
  unknownFields,
} from '../../lib/fields.ts';
import { ownField, typeName } from '../../lib/json.ts';
import {
  CONTENT_TYPES,
  type ContentType,
  DOCUMENT_UPLOADED,
  type JiraTicket,
  PRIORITIES,
  TICKET_CREATED,
  type TicketTriagePayload,
  type UploadedDocument,
} from './types.ts';
import type { PayloadResult } from '../../lib/pipeline.ts';

/** The shared readers (lib/fields.ts); ticket-triage uses normalizeEmail's `email` only. */
export { codePointCount, type EmailNormalization, MAX_EMAIL_CHARS, normalizeEmail } from '../../lib/fields.ts';

export const TICKET_FIELDS = ['ticket_key', 'project', 'summary', 'description', 'reporter_email', 'labels', 'priority_hint'] as const;
export const DOCUMENT_FIELDS = ['document_id', 'filename', 'content_type', 'sha256', 'pages', 'text', 'text_truncated'] as const;

export const TICKET_KEY = /^[A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8}$/;
export const DOCUMENT_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

export const MAX_SUMMARY_CHARS = 255;
export const MAX_PROJECT_CHARS = 255;
export const MAX_FILENAME_CHARS = 255;
export const MAX_DESCRIPTION_BYTES = 32_768; // 32 KiB of UTF-8
export const MAX_TEXT_BYTES = 65_536; // 64 KiB of UTF-8
export const MAX_LABELS = 20;
export const MAX_LABEL_CHARS = 64;

/** C0 controls but tab (U+0009) and LF (U+000A), DEL, and C1 controls. */
const CONTROL_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
const ANY_CONTROL_CHAR = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Multi-line text as stored: CRLF and lone CR → LF, control characters other
 * than tab and LF removed, then trimmed. Idempotent.
 */
export function normalizeText(raw: string): string {
  return raw.replace(/\r\n?/g, '\n').replace(CONTROL_CHARS, '').trim();
}

/** One-line text as stored: normalizeText, then every run of tabs and line breaks → one space. */
export function normalizeLine(raw: string): string {
  return normalizeText(raw).replace(/[\t\n]+/g, ' ');
}

export const utf8Bytes = (text: string): number => Buffer.byteLength(text, 'utf8');

/** The ticket-triage PayloadRules; see the module comment for the rules. */
export function parseTicketTriagePayload(eventType: string, payload: object): PayloadResult<TicketTriagePayload> {
  return readPayload<TicketTriagePayload>(() => {
    if (eventType === TICKET_CREATED) {
      return { ok: true, value: { ticket: pickTicket(payload), document: null }, droppedFields: unknownFields(payload, ticketFields) };
    }
    if (eventType === DOCUMENT_UPLOADED) {
      return { ok: true, value: { ticket: null, document: pickDocument(payload) }, droppedFields: unknownFields(payload, documentFields) };
    }
    // Unreachable behind the validate stage, which checks the event type first.
    return { ok: false, field: 'event_type', message: `not an event type of ticket-triage: ${JSON.stringify(eventType.slice(0, 100))}` };
  });
}

const ticketFields: ReadonlySet<string> = new Set(TICKET_FIELDS);
const documentFields: ReadonlySet<string> = new Set(DOCUMENT_FIELDS);

function pickTicket(payload: object): JiraTicket {
  const ticket_key = requiredString(payload, 'ticket_key');
  if (!TICKET_KEY.test(ticket_key)) {
    throw new Reject('ticket_key', 'expected a Jira issue key like SUP-123 (upper-case project key of 2-10 characters, a dash, a number without leading zeros)');
  }
  const project = line('project', requiredString(payload, 'project'), MAX_PROJECT_CHARS);
  const summary = line('summary', requiredString(payload, 'summary'), MAX_SUMMARY_CHARS);

  const rawDescription = optionalString(payload, 'description');
  let description: string | null = null;
  if (rawDescription !== null) {
    const normalized = normalizeText(rawDescription);
    if (utf8Bytes(normalized) > MAX_DESCRIPTION_BYTES) {
      throw new Reject('description', `longer than ${MAX_DESCRIPTION_BYTES} bytes of UTF-8 (32 KiB)`);
    }
    description = normalized === '' ? null : normalized;
  }

  const rawEmail = optionalString(payload, 'reporter_email');
  let reporter_email: string | null = null;
  if (rawEmail !== null) {
    const email = normalizeEmail(rawEmail);
    if (!email.ok) throw new Reject('reporter_email', email.message);
    reporter_email = email.email;
  }

  const rawHint = optionalString(payload, 'priority_hint');
  const priority_hint = rawHint === null ? null : oneOf('priority_hint', rawHint, PRIORITIES);

  return { ticket_key, project, summary, description, reporter_email, labels: labels(payload), priority_hint };
}

function labels(payload: object): string[] {
  const value = ownField(payload, 'labels');
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Reject('labels', `expected an array of strings, got ${typeName(value)}`);
  if (value.length > MAX_LABELS) throw new Reject('labels', `at most ${MAX_LABELS} labels, got ${value.length}`);
  const out: string[] = [];
  value.forEach((item: unknown, index) => {
    if (typeof item !== 'string') throw new Reject('labels', `item ${index}: expected a string, got ${typeName(item)}`);
    if (!item.isWellFormed()) throw new Reject('labels', `item ${index}: contains a lone UTF-16 surrogate`);
    const label = item.trim().toLowerCase();
    if (label === '') throw new Reject('labels', `item ${index}: must not be empty`);
    if (ANY_CONTROL_CHAR.test(label)) throw new Reject('labels', `item ${index}: must not contain control characters`);
    if (codePointCount(label, MAX_LABEL_CHARS + 1) > MAX_LABEL_CHARS) {
      throw new Reject('labels', `item ${index}: longer than ${MAX_LABEL_CHARS} characters`);
    }
    if (!out.includes(label)) out.push(label);
  });
  return out;
}

function pickDocument(payload: object): UploadedDocument {
  const document_id = requiredString(payload, 'document_id');
  if (!DOCUMENT_ID.test(document_id)) {
    throw new Reject('document_id', 'expected 1-128 characters of letters, digits, ".", "_", ":" and "-", starting with a letter or digit');
  }
  const filename = line('filename', requiredString(payload, 'filename'), MAX_FILENAME_CHARS);
  if (/[/\\]/.test(filename)) throw new Reject('filename', 'must be a base name, without "/" or "\\"');

  const sha256 = requiredString(payload, 'sha256');
  if (!SHA256_HEX.test(sha256)) throw new Reject('sha256', 'expected 64 lower-case hexadecimal digits');

  const text = normalizeText(requiredString(payload, 'text'));
  if (utf8Bytes(text) > MAX_TEXT_BYTES) throw new Reject('text', `longer than ${MAX_TEXT_BYTES} bytes of UTF-8 (64 KiB)`);

  const truncated = ownField(payload, 'text_truncated');
  if (truncated === undefined) throw new Reject('text_truncated', 'required');
  if (typeof truncated !== 'boolean') throw new Reject('text_truncated', `expected a boolean, got ${typeName(truncated)}`);

  return {
    document_id,
    filename,
    content_type: contentType(requiredString(payload, 'content_type')),
    sha256,
    pages: pages(payload),
    text,
    text_truncated: truncated,
  };
}

function contentType(raw: string): ContentType {
  const bare = raw.split(';', 1)[0]!.trim().toLowerCase();
  return oneOf('content_type', bare, CONTENT_TYPES);
}

function pages(payload: object): number | null {
  const value = ownField(payload, 'pages');
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number') throw new Reject('pages', `expected an integer or null, got ${typeName(value)}`);
  if (!Number.isInteger(value) || value < 1 || value > INT32_MAX) {
    throw new Reject('pages', `expected an integer from 1 to ${INT32_MAX}, or null`);
  }
  return value;
}

/** A one-line text field: normalized, then 1 to `maxChars` code points. */
function line(field: string, raw: string, maxChars: number): string {
  const value = normalizeLine(raw);
  if (value === '') throw new Reject(field, 'must not be empty');
  if (codePointCount(value, maxChars + 1) > maxChars) throw new Reject(field, `longer than ${maxChars} characters`);
  return value;
}
