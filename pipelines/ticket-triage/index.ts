/**
 * ticket-triage, reference pipeline 2 (PRODUCT.md): Jira tickets and uploaded
 * documents, a text classifier over five queues, and a routing policy whose
 * security rule always wins. Everything specific to it lives here, in
 * schemas/ticket-triage/, models/ticket-triage/ and training/ticket-triage/.
 */
import { fileURLToPath } from 'node:url';
import type { PipelinePlugin } from '../../lib/pipeline.ts';
import { ticketTriageModel } from './features.ts';
import { ticketTriageGenerator } from './generator.ts';
import { parseTicketTriagePayload } from './payload.ts';
import { type TriagePolicyConfig, ticketTriagePolicy } from './policy.ts';
import { EVENT_TYPES, PIPELINE, type TicketTriagePayload } from './types.ts';

export const ticketTriage: PipelinePlugin<TicketTriagePayload, TriagePolicyConfig> = {
  kind: PIPELINE,
  description: 'Routes Jira tickets and uploaded documents to the billing, bug, security, account or feature_request queue.',
  eventTypes: EVENT_TYPES,
  owners: {
    team: 'support-platform',
    data: 'support-tools',
    model: 'support-ml',
    infra: 'streaming-platform',
    oncall: 'support-oncall',
    escalation: 'support-platform-lead',
    runbook: 'docs/runbooks/ticket-triage.md',
    runbookBase: 'docs/runbooks/',
  },
  circuitBreaker: { threshold: 0.5, window: 1_000, minRecords: 100, coolDownSeconds: 300 },
  // Tickets by ticket key, documents by document id; tickets may be re-imported a day late, so lateness is generous.
  ingest: { keying: ['payload.ticket.ticket_key', 'payload.document.document_id'], latenessMs: 86_400_000, clockSkewMs: 300_000, dedupWindowMs: 86_400_000 },
  decisions: ['route', 'review'],
  reviewDecision: 'review',
  review: {
    // A ticket is not left unrouted: past its SLA it goes to the queue the model proposed (route, decided_by fallback).
    slaSeconds: 2 * 3_600,
    auditRate: 0.02,
    fallbackDecision: 'route',
    leaseSeconds: 600,
  },
  // The largest valid event is a document: 64 KiB of text, which JSON escaping
  // can double (quotes, backslashes, line breaks), plus under 1 KiB of fields;
  // a ticket's 32 KiB description likewise. 256 KiB fits both with room, and
  // stays far below the broker's 1 MiB limit, so the dead letter fits too.
  maxMessageBytes: 262_144,
  schemasDir: fileURLToPath(new URL('../../schemas/ticket-triage/', import.meta.url)),
  payload: parseTicketTriagePayload,
  model: ticketTriageModel,
  policy: ticketTriagePolicy,
  generator: ticketTriageGenerator,
};
