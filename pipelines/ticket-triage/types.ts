/**
 * TypeScript shapes of the ticket-triage records (schemas/ticket-triage/*.avsc).
 * One payload record serves both event types: exactly one of `ticket` and
 * `document` is set, matching `event_type`. avsc runs with `wrapUnions: false`,
 * where a union of two record types is ambiguous, hence two nullable branches
 * rather than a union.
 */
import type * as contracts from '../../lib/contracts.ts';

export const PIPELINE = 'ticket-triage';

export const TICKET_CREATED = 'jira_ticket_created';
export const DOCUMENT_UPLOADED = 'document_uploaded';
export const EVENT_TYPES = [TICKET_CREATED, DOCUMENT_UPLOADED] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The queues, in the model's output column order (the card's `onnx.classes`). */
export const CATEGORIES = ['billing', 'bug', 'security', 'account', 'feature_request'] as const;
export type Category = (typeof CATEGORIES)[number];

export const PRIORITIES = ['P1', 'P2', 'P3', 'P4'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** The content types the ingest API extracts text from. */
export const CONTENT_TYPES = ['application/pdf', 'text/plain', 'text/markdown'] as const;
export type ContentType = (typeof CONTENT_TYPES)[number];

export interface JiraTicket {
  ticket_key: string;
  project: string;
  summary: string;
  description: string | null;
  reporter_email: string | null;
  /** lower case, de-duplicated, in first-seen order; [] when absent */
  labels: string[];
  priority_hint: Priority | null;
}

export interface UploadedDocument {
  document_id: string;
  filename: string;
  content_type: ContentType;
  sha256: string;
  pages: number | null;
  text: string;
  /** the ingest API cut the extracted text at its 64 KiB limit */
  text_truncated: boolean;
}

export type TicketTriagePayload = { ticket: JiraTicket; document: null } | { ticket: null; document: UploadedDocument };

export type Envelope = contracts.RecordEnvelope;
export type ValidatedRecord = contracts.ValidatedRecord<TicketTriagePayload>;
/** `score` is the top class probability, `label` the top class; the features are the monitored ones, never the hashed vector. */
export type ScoredRecord = contracts.ScoredRecord<TicketTriagePayload>;

export type DecidedBy = contracts.DecidedBy;
export type TriageDecision = 'route' | 'review';

/** The common decision, then ticket-triage's own fields. */
export interface DecisionRecord extends contracts.DecisionRecord<TriageDecision> {
  queue: Category;
  priority: Priority;
}

export type ReviewRecord = contracts.ReviewRecord<TicketTriagePayload, DecisionRecord>;
