/**
 * Defensive reading of untrusted records: JSON from bytes, and field access on
 * objects that came from outside (parsed JSON or a decoded Avro record).
 *
 * Why JSON.parse is enough here: V8's parser is iterative (deep nesting cannot
 * overflow the stack), defines every key as an own data property (a
 * `__proto__` key never reaches a prototype), and huge numbers become
 * ±Infinity rather than throwing. Duplicate keys resolve last-wins, as in
 * every ECMAScript engine; nothing downstream re-reads the raw text, so no
 * second parser can see a different value.
 */

/** Strict UTF-8: invalid bytes, overlongs and encoded surrogates throw. */
const utf8 = new TextDecoder('utf-8', { fatal: true });

export type JsonObjectParse = { ok: true; value: object } | { ok: false; message: string };

/**
 * Parses bytes as one JSON object. A leading UTF-8 byte order mark is ignored
 * (RFC 8259 §8.1 allows a parser to); everything else that is not strict UTF-8
 * holding a JSON object (array, scalar, null) is an error, never an exception.
 */
export function parseJsonObject(bytes: Uint8Array): JsonObjectParse {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, message: 'value is not valid UTF-8' };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { ok: false, message: `value is not valid JSON (${error instanceof Error ? error.name : 'error'})` };
  }
  if (parsed === null) return { ok: false, message: 'value is JSON null, not an object' };
  if (Array.isArray(parsed)) return { ok: false, message: 'value is a JSON array, not an object' };
  if (typeof parsed !== 'object') return { ok: false, message: `value is a JSON ${typeof parsed}, not an object` };
  return { ok: true, value: parsed };
}

/**
 * True for a record-like object: not null, not an array, not binary, not a
 * Date. Decoded Avro records are class instances, so the prototype is not
 * checked; fields are only ever read through `ownField`.
 */
export function isRecordObject(value: unknown): value is object {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !ArrayBuffer.isView(value) &&
    !(value instanceof ArrayBuffer) &&
    !(value instanceof Date)
  );
}

/** An own property of `record`, or undefined: never anything inherited from a prototype. */
export function ownField(record: object, name: string): unknown {
  return Object.hasOwn(record, name) ? (record as Record<string, unknown>)[name] : undefined;
}

/** Own enumerable string keys: the field names of a parsed or decoded record. */
export function fieldNames(record: object): string[] {
  return Object.keys(record);
}

/** A short description of a value's type for messages ("null", "array", "number"). */
export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}
