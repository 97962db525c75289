/**
 * JSON schemas of the ingest routes: /openapi.json is generated from them,
 * and fastify serializes the responses with them. Request bodies are checked
 * in the handlers (a batch answers per event), not by these schemas.
 */
import { INGEST_ERRORS } from './errors.ts';

const errorBody = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', enum: Object.keys(INGEST_ERRORS) },
        message: { type: 'string', description: 'What went wrong and what to do about it; match on `code`, not on this text.' },
      },
    },
  },
} as const;

const envelope = {
  type: 'object',
  description: 'A raw event envelope (PRODUCT.md, Contracts). The payload is checked by the pipeline\'s validate stage; payload problems become dead letters.',
  required: ['event_id', 'event_type', 'occurred_at', 'source', 'payload'],
  properties: {
    event_id: { type: 'string', minLength: 1, maxLength: 128, description: 'Unique per event: the idempotency key' },
    event_type: { type: 'string', description: 'One of the pipeline\'s event types' },
    occurred_at: { oneOf: [{ type: 'string', format: 'date-time' }, { type: 'integer', description: 'epoch milliseconds' }] },
    source: { type: 'string' },
    payload: { type: 'object', additionalProperties: true },
  },
} as const;

const pipelineParams = {
  type: 'object',
  required: ['pipeline'],
  properties: { pipeline: { type: 'string', description: 'A pipeline name (e.g. signup-risk, ticket-triage, or an instance such as ticket-triage-staging)' } },
} as const;

const retryHeaders = { 'Retry-After': { type: 'integer', description: 'Seconds to wait before retrying' } } as const;

const errors = (statuses: Record<string, string>) =>
  Object.fromEntries(
    Object.entries(statuses).map(([status, description]) => [
      status,
      { description, ...errorBody, ...((status === '429' || status === '503') && { headers: retryHeaders }) },
    ]),
  );

export const eventsRoute = {
  summary: 'Send one event, or up to 500',
  description:
    'Each event is produced to `<pipeline>.raw` (idempotent producer, acks=all, in a Kafka transaction) or not at all. An event_id seen for the pipeline within the idempotency window (24 h) answers `duplicate` with the original partition and offset and is not produced again. A single envelope that fails the door checks answers 400/413; inside a batch such events answer `rejected` and the others go on.',
  tags: ['events'],
  security: [{ apiKey: [] }],
  params: pipelineParams,
  body: {
    content: {
      'application/json': {
        schema: {
          oneOf: [envelope, { type: 'object', required: ['events'], properties: { events: { type: 'array', minItems: 1, maxItems: 500, items: envelope } } }],
        },
      },
    },
  },
  response: {
    202: {
      description: 'One result per event, in order',
      type: 'object',
      required: ['results'],
      properties: {
        results: {
          type: 'array',
          items: {
            type: 'object',
            required: ['event_id', 'status'],
            properties: {
              event_id: { type: ['string', 'null'] },
              status: { type: 'string', enum: ['accepted', 'duplicate', 'rejected'] },
              partition: { type: 'integer' },
              offset: { type: 'string', description: 'Kafka offset, decimal' },
              error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' } } },
            },
          },
        },
      },
    },
    ...errors({
      400: 'INVALID_JSON, INVALID_ENVELOPE, UNEXPECTED_EVENT_TYPE (a single envelope), INVALID_BATCH',
      401: 'UNAUTHORIZED: no key, or an unknown or revoked one',
      403: 'FORBIDDEN: a key of another pipeline',
      404: 'PIPELINE_UNKNOWN',
      413: 'EVENT_TOO_LARGE (over 256 KiB), REQUEST_TOO_LARGE (over 5 MiB)',
      415: 'UNSUPPORTED_MEDIA_TYPE: not application/json',
      429: 'RATE_LIMITED: over the key\'s events per second',
      503: 'KAFKA_UNAVAILABLE (not acknowledged in time: nothing was accepted), OVERLOADED',
    }),
  },
} as const;

export const documentsRoute = {
  summary: 'Upload a document (PDF, plain text, markdown)',
  description:
    'The text is extracted (at most 64 KiB kept, `text_truncated` says so), the original is kept in the content-addressed document store, and a `document_uploaded` event goes to `<pipeline>.raw`. The same bytes uploaded again answer `duplicate`. OCR is not supported: a PDF without a text layer answers 422 NO_TEXT.',
  tags: ['documents'],
  security: [{ apiKey: [] }],
  params: pipelineParams,
  consumes: ['multipart/form-data'],
  body: {
    content: {
      'multipart/form-data': {
        schema: {
          type: 'object',
          required: ['file'],
          properties: {
            file: { type: 'string', format: 'binary', description: 'application/pdf, text/plain or text/markdown; at most 10 MiB' },
            metadata: { type: 'string', description: 'Optional JSON object: source, occurred_at, filename' },
          },
        },
      },
    },
  },
  response: {
    202: {
      description: 'Accepted, or a duplicate of an earlier upload of the same bytes',
      type: 'object',
      required: ['status', 'document_id', 'event_id', 'sha256', 'pages', 'text_truncated', 'partition', 'offset'],
      properties: {
        status: { type: 'string', enum: ['accepted', 'duplicate'] },
        document_id: { type: 'string' },
        event_id: { type: 'string' },
        sha256: { type: 'string' },
        pages: { type: ['integer', 'null'] },
        text_truncated: { type: 'boolean' },
        partition: { type: 'integer' },
        offset: { type: 'string' },
      },
    },
    ...errors({
      400: 'INVALID_MULTIPART, INVALID_METADATA',
      401: 'UNAUTHORIZED',
      403: 'FORBIDDEN',
      404: 'PIPELINE_UNKNOWN, DOCUMENTS_NOT_ACCEPTED',
      413: 'DOCUMENT_TOO_LARGE (over 10 MiB)',
      415: 'UNSUPPORTED_MEDIA_TYPE (not multipart), UNSUPPORTED_DOCUMENT_TYPE',
      422: 'CORRUPT_DOCUMENT, ENCRYPTED_DOCUMENT, NO_TEXT',
      429: 'RATE_LIMITED',
      503: 'KAFKA_UNAVAILABLE, OVERLOADED',
    }),
  },
} as const;
