/**
 * The review service's error catalog: every refusal the API answers, with its
 * HTTP status. A response body is `{"error":{"code","message"}}`; the UI and
 * tests match on `code`, and the message says what to do.
 */
import { HttpServiceError } from '../lib/http-errors.ts';

export const REVIEW_ERRORS = {
  INVALID_REQUEST: { status: 400 },
  REASON_REQUIRED: { status: 400 },
  DECISION_NOT_ALLOWED: { status: 400 },
  FIELD_REQUIRED: { status: 400 },
  FIELD_INVALID: { status: 400 },
  WRONG_PASSWORD: { status: 400 },
  PASSWORD_TOO_WEAK: { status: 400 },
  UNAUTHENTICATED: { status: 401 },
  INVALID_CREDENTIALS: { status: 401 },
  CSRF_TOKEN_INVALID: { status: 403 },
  FORBIDDEN: { status: 403 },
  PASSWORD_CHANGE_REQUIRED: { status: 403 },
  PIPELINE_UNKNOWN: { status: 404 },
  ITEM_NOT_FOUND: { status: 404 },
  NOT_FOUND: { status: 404 },
  CLAIMED_BY_OTHER: { status: 409 },
  ALREADY_RESOLVED: { status: 409 },
  RESOLUTION_IN_PROGRESS: { status: 409 },
  REVIEWER_EXISTS: { status: 409 },
  TOO_MANY_ATTEMPTS: { status: 429 },
  NOT_READY: { status: 503 },
  KAFKA_UNAVAILABLE: { status: 503 },
  INTERNAL: { status: 500 },
} as const;

export type ReviewErrorCode = keyof typeof REVIEW_ERRORS;

export class ReviewError extends HttpServiceError<ReviewErrorCode> {
  constructor(code: ReviewErrorCode, message: string, options: { cause?: unknown } = {}) {
    super('ReviewError', code, REVIEW_ERRORS[code].status, message, options.cause);
  }
}

export const isReviewError = (error: unknown, code?: ReviewErrorCode): error is ReviewError =>
  error instanceof ReviewError && (code === undefined || error.code === code);
