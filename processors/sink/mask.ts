/**
 * Masking of personal data in what the sink stores about dead letters (a
 * preview of the value, and the stage's message, which may echo input).
 * Analysts see the shape of a bad record, never whose it was.
 *
 * Two passes, because a dead letter may be anything:
 * - structured (a JSON object or a decoded Avro record): the value of every key
 *   that names personal data is replaced, wherever it is nested;
 * - text (everything, including what the first pass produced): anything that
 *   looks like an email address, an IP address or a phone number is replaced,
 *   and `"key": value` pairs of personal keys are caught even in truncated or
 *   invalid JSON.
 */

/** Characters of a dead letter's value kept as its preview. */
export const PREVIEW_CHARS = 200;
/** Characters of a dead letter's message kept. */
export const MESSAGE_CHARS = 1_000;
/** Characters kept of a pipeline-specific decision field's value. */
export const FIELD_CHARS = 1_000;
export const REDACTED = '[redacted]';

/** Keys whose values are personal data, compared lower case with `-` as `_`. */
export const PERSONAL_KEYS: ReadonlySet<string> = new Set([
  'email',
  'email_address',
  'user_id',
  'userid',
  'username',
  'name',
  'first_name',
  'last_name',
  'full_name',
  'phone',
  'phone_number',
  'mobile',
  'address',
  'street',
  'postcode',
  'zip',
  'ip',
  'ip_address',
  'device_fingerprint',
  'referral_code',
  'password',
  'ssn',
  'dob',
  'date_of_birth',
  'birthdate',
  'card_number',
  'iban',
  'token',
]);

/** A personal key, or any `<who>_email` (reporter_email, contact_email). */
export function isPersonalKey(key: string): boolean {
  const normalized = key.toLowerCase().replaceAll('-', '_');
  return PERSONAL_KEYS.has(normalized) || normalized.endsWith('_email');
}

// The lookbehind starts a match only at the beginning of a run of address characters: linear, not quadratic, on long runs.
const EMAIL = /(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;
const IPV4 = /\b(?:\d{1,3}\.){3}\d{1,3}\b/g;
// At least four groups, so clock times (10:00:00) are left alone.
const IPV6 = /\b(?:[0-9A-Fa-f]{1,4}:){3,7}[0-9A-Fa-f]{1,4}\b/g;
const PHONE = /\+\d[\d\s().-]{6,}\d/g;
// "key": "value" (possibly cut off) or "key": number, for a personal key; in any text.
const KEY_VALUE = /"([A-Za-z0-9_-]+)"(\s*:\s*)("(?:[^"\\]|\\.)*(?:"|$)|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

/** Masks personal data in free text (also in JSON text that does not parse). */
export function maskText(text: string): string {
  return text
    .replace(KEY_VALUE, (match, key: string, colon: string) => (isPersonalKey(key) ? `"${key}"${colon}"${REDACTED}"` : match))
    .replace(EMAIL, '[email]')
    .replace(IPV4, '[ip]')
    .replace(IPV6, '[ip]')
    .replace(PHONE, '[phone]');
}

/** A copy of a parsed value with the values of personal keys replaced, at any depth. */
export function maskValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(maskValue);
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) out[key] = isPersonalKey(key) ? REDACTED : maskValue(inner);
    return out;
  }
  return value;
}

/** JSON for previews: Buffers as hex, bigints as strings. */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) => {
    if (typeof inner === 'bigint') return inner.toString();
    if (inner && typeof inner === 'object' && (inner as { type?: unknown }).type === 'Buffer' && Array.isArray((inner as { data?: unknown }).data)) {
      return `<${(inner as { data: number[] }).data.length} bytes>`;
    }
    return inner;
  });
}

/** Bytes as text for a preview: invalid UTF-8 becomes U+FFFD, control characters `.`. */
function bytesAsText(bytes: Buffer): string {
  return bytes.toString('utf8').replace(/[\u0000-\u0008\u000B-\u001F\u007F]/g, '.');
}

const cut = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/**
 * The masked preview of a dead letter's value. `decoded` is the value when it
 * was registry-framed Avro that decodes; otherwise the bytes are read as text,
 * and as JSON when they parse.
 */
export function previewOf(bytes: Buffer, decoded?: unknown, maxChars = PREVIEW_CHARS): string {
  if (decoded !== undefined) return cut(maskText(toJson(maskValue(decoded))), maxChars);
  // Only as much text as can matter: masking shortens, never lengthens much.
  const text = bytesAsText(bytes.subarray(0, maxChars * 8));
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const structured = parsed !== null && typeof parsed === 'object' ? toJson(maskValue(parsed)) : text;
  return cut(maskText(structured), maxChars);
}

/** A dead letter's message, masked and bounded. */
export function maskMessage(message: string): string {
  return cut(maskText(message.slice(0, MESSAGE_CHARS * 2)), MESSAGE_CHARS);
}

/**
 * A pipeline-specific field of a decided record as the text ClickHouse keeps
 * (decisions.extra_values): strings as they are, numbers and booleans in their
 * usual form, null as '', records and arrays as JSON; personal data masked as
 * in dead letters (a non-null value of a personal key is replaced whole).
 */
export function fieldText(key: string, value: unknown): string {
  if (value === null || value === undefined) return '';
  if (isPersonalKey(key)) return REDACTED;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  const text = typeof value === 'string' ? value : toJson(maskValue(value));
  return cut(maskText(text.slice(0, FIELD_CHARS * 2)), FIELD_CHARS);
}
