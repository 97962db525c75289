/**
 * The ingest API's error catalog: every refusal the gateway answers, with its
 * HTTP status. A response body is `{"error":{"code","message"}}`; clients and
 * tests match on `code`, and the message says what to do. Per-event rejections
 * inside a batch use the same codes.
 */
import { HttpServiceError } from '../lib/http-errors.ts';

export const INGEST_ERRORS = {
  UNAUTHORIZED: { status: 401 },
  FORBIDDEN: { status: 403 },
  PIPELINE_UNKNOWN: { status: 404 },
  DOCUMENTS_NOT_ACCEPTED: { status: 404 },
  NOT_FOUND: { status: 404 },
  INVALID_JSON: { status: 400 },
  INVALID_ENVELOPE: { status: 400 },
  UNEXPECTED_EVENT_TYPE: { status: 400 },
  INVALID_BATCH: { status: 400 },
  INVALID_MULTIPART: { status: 400 },
  INVALID_METADATA: { status: 400 },
  EVENT_TOO_LARGE: { status: 413 },
  REQUEST_TOO_LARGE: { status: 413 },
  DOCUMENT_TOO_LARGE: { status: 413 },
  UNSUPPORTED_MEDIA_TYPE: { status: 415 },
  UNSUPPORTED_DOCUMENT_TYPE: { status: 415 },
  CORRUPT_DOCUMENT: { status: 422 },
  ENCRYPTED_DOCUMENT: { status: 422 },
  NO_TEXT: { status: 422 },
  RATE_LIMITED: { status: 429 },
  KAFKA_UNAVAILABLE: { status: 503 },
  OVERLOADED: { status: 503 },
  INTERNAL: { status: 500 },
} as const;

export type IngestErrorCode = keyof typeof INGEST_ERRORS;

export class IngestError extends HttpServiceError<IngestErrorCode> {
  /** Seconds a client should wait before retrying (429, 503): sent as Retry-After. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: IngestErrorCode, message: string, options: { retryAfterSeconds?: number; cause?: unknown } = {}) {
    super('IngestError', code, INGEST_ERRORS[code].status, message, options.cause);
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export const isIngestError = (error: unknown, code?: IngestErrorCode): error is IngestError =>
  error instanceof IngestError && (code === undefined || error.code === code);
