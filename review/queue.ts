/**
 * The review queue of one pipeline as a pure state machine over two logs:
 *
 * - `<p>.review`: what the decide stage sent to review (the decision, its
 *   score, reasons, versions and payload); one item per event id, so a replay
 *   that sends the same event to review again refreshes its open item and never
 *   reopens one that a human (or the SLA) already closed; a replay that decides
 *   an event with an open item otherwise writes it `superseded`, which closes
 *   the item (so no human decision can carry a version the replay used);
 * - `<p>.review-state`: every action taken on items, in one partition, so the
 *   log's order is the one order every instance applies them in. A claim is
 *   a request: it wins only if, when applied in log order, the item is open and
 *   unclaimed, its lease has run out, or the claimant already holds it. Every
 *   instance therefore computes the same winner, and a writer learns whether
 *   its claim won by reading its own record back (`rid`).
 *
 * A `resolved` record is final and is applied as it comes: the service writes
 * it only in the transaction that also writes the decision, after fencing
 * every other writer of that item (see store.ts).
 *
 * No I/O and no clock: times arrive in records and arguments.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DECISION_COMMON_FIELDS, type ReviewRecord } from '../lib/contracts.ts';

export type ItemKind = 'review' | 'audit';
/** `superseded`: a replay re-decided the event and its decision stands; the item closed without a human decision. */
export type ItemStatus = 'open' | 'resolved' | 'expired' | 'superseded';

/** The id of an event's item: stable across instances and restarts, safe in a URL. */
export const itemIdOf = (pipeline: string, eventId: string): string =>
  createHash('sha256').update(`${pipeline}\u0000${eventId}`, 'utf8').digest('base64url').slice(0, 22);

/** A review request as read from `<p>.review`. */
export interface ReviewSource {
  /** The Kafka key of the review record (the producer's key, kept end to end). */
  key: string | null;
  record: ReviewRecord & Record<string, unknown>;
  kind: ItemKind;
}

export interface Resolution {
  outcome: 'human' | 'expired';
  by: string;
  at: number;
  decision: string;
  reason: string;
  /** The pipeline's own decided fields given by the reviewer (ticket-triage: queue, priority). */
  fields: Record<string, string>;
  decision_version: number;
}

export const stateRecordSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('claim'), item_id: z.string(), rid: z.string(), by: z.string(), at: z.number(), lease_ms: z.number().int().positive() }),
  z.object({ type: z.literal('release'), item_id: z.string(), rid: z.string(), by: z.string(), at: z.number() }),
  z.object({
    type: z.literal('resolved'),
    item_id: z.string(),
    rid: z.string(),
    outcome: z.enum(['human', 'expired']),
    by: z.string(),
    at: z.number(),
    decision: z.string(),
    reason: z.string(),
    fields: z.record(z.string(), z.string()),
    decision_version: z.number().int(),
  }),
  /** Written by an instance to learn that it has read everything committed before it. */
  z.object({ type: z.literal('sync'), token: z.string() }),
]);
export type StateRecord = z.infer<typeof stateRecordSchema>;

interface ItemState {
  claim?: { by: string; until: number };
  resolution?: Resolution;
  /** Closed by a replay's re-decision (not a resolution: no human or fallback decision is written). */
  superseded?: { replayId: string | null; decision: string; decisionVersion: number };
}

/** What a reviewer sees of an item (the API's item object). */
export interface ItemView {
  item_id: string;
  pipeline: string;
  event_id: string;
  kind: ItemKind;
  status: ItemStatus;
  decision: string;
  decided_by: string;
  decision_version: number;
  score: number | null;
  reasons: string[];
  payload: unknown;
  /** The pipeline's own fields of the decision under review (ticket-triage: queue, priority). */
  fields: Record<string, unknown>;
  model_version: string | null;
  policy_version: string;
  occurred_at: number;
  created_at: number;
  due_at: number;
  claimed_by: string | null;
  claim_expires_at: number | null;
  resolution: Resolution | null;
  /** Set when a replay's re-decision closed the item. */
  superseded_by: { replay_id: string | null; decision: string; decision_version: number } | null;
}

/** The outcome of applying one state record: for the writer waiting on its `rid`. */
export type Applied =
  | { rid: string; type: 'claim'; won: true }
  | { rid: string; type: 'claim'; won: false; heldBy: string | null; status: ItemStatus }
  | { rid: string; type: 'release' | 'resolved'; won: boolean }
  | { type: 'sync'; token: string };

/** Not the pipeline's own fields: the common ones, the payload, and the item's kind (review.avsc). */
const COMMON_REVIEW_FIELDS = new Set<string>([...DECISION_COMMON_FIELDS, 'payload', 'kind']);

export class ReviewQueue {
  readonly pipeline: string;
  private readonly slaMs: number;
  private readonly sources = new Map<string, ReviewSource>();
  private readonly states = new Map<string, ItemState>();

  constructor(pipeline: string, options: { slaMs: number }) {
    this.pipeline = pipeline;
    this.slaMs = options.slaMs;
  }

  /** Applies a replay's `superseded` record: closes the event's open item, if it has one; returns its id. */
  applySuperseded(record: ReviewRecord & Record<string, unknown>): string {
    const id = itemIdOf(this.pipeline, record.event_id);
    const known = this.sources.get(id);
    const state = this.states.get(id) ?? {};
    if (known === undefined || state.resolution || state.superseded || record.decision_version < known.record.decision_version) return id;
    state.superseded = { replayId: typeof record['replay_id'] === 'string' ? record['replay_id'] : null, decision: record.decision, decisionVersion: record.decision_version };
    delete state.claim;
    this.states.set(id, state);
    return id;
  }

  /** Applies one record of `<p>.review`; returns the item id. */
  applyReview(source: ReviewSource): string {
    const id = itemIdOf(this.pipeline, source.record.event_id);
    const known = this.sources.get(id);
    // The newest request for an event stands while it is open; a closed item stays closed.
    if (!known || (!this.states.get(id)?.resolution && source.record.decision_version >= known.record.decision_version)) {
      this.sources.set(id, source);
    }
    return id;
  }

  /** Applies one record of `<p>.review-state`, in log order. */
  applyState(record: StateRecord): Applied {
    if (record.type === 'sync') return { type: 'sync', token: record.token };
    const state = this.states.get(record.item_id) ?? {};
    this.states.set(record.item_id, state);
    switch (record.type) {
      case 'claim': {
        if (state.resolution || state.superseded) return { rid: record.rid, type: 'claim', won: false, heldBy: null, status: statusOf(state) };
        const holder = state.claim && state.claim.until > record.at ? state.claim.by : null;
        if (holder !== null && holder !== record.by) return { rid: record.rid, type: 'claim', won: false, heldBy: holder, status: 'open' };
        state.claim = { by: record.by, until: record.at + record.lease_ms };
        return { rid: record.rid, type: 'claim', won: true };
      }
      case 'release': {
        if (state.resolution || state.claim?.by !== record.by) return { rid: record.rid, type: 'release', won: false };
        delete state.claim;
        return { rid: record.rid, type: 'release', won: true };
      }
      case 'resolved': {
        // A resolution the service wrote before it read the supersession still stands: it carries a higher version.
        if (state.resolution) return { rid: record.rid, type: 'resolved', won: false };
        const { outcome, by, at, decision, reason, fields, decision_version } = record;
        state.resolution = { outcome, by, at, decision, reason, fields, decision_version };
        delete state.claim;
        return { rid: record.rid, type: 'resolved', won: true };
      }
    }
  }

  source(itemId: string): ReviewSource | undefined {
    return this.sources.get(itemId);
  }

  item(itemId: string, now: number): ItemView | undefined {
    const source = this.sources.get(itemId);
    return source ? this.view(itemId, source, now) : undefined;
  }

  /** Items of a status (or all), soonest due first. */
  list(status: ItemStatus | 'all', now: number): ItemView[] {
    const out: ItemView[] = [];
    for (const [id, source] of this.sources) {
      const state = this.states.get(id);
      if (status === 'all' || statusOf(state) === status) out.push(this.view(id, source, now));
    }
    return out.sort((a, b) => a.due_at - b.due_at || a.item_id.localeCompare(b.item_id));
  }

  /** Open items whose due time has passed at `now`: the expiry sweep's work. */
  overdue(now: number): string[] {
    const out: string[] = [];
    for (const [id, source] of this.sources) {
      if (statusOf(this.states.get(id)) === 'open' && this.dueAt(source) <= now) out.push(id);
    }
    return out;
  }

  counts(): Record<ItemStatus, number> {
    const counts: Record<ItemStatus, number> = { open: 0, resolved: 0, expired: 0, superseded: 0 };
    for (const id of this.sources.keys()) counts[statusOf(this.states.get(id))]++;
    return counts;
  }

  private dueAt(source: ReviewSource): number {
    return source.record.decided_at + this.slaMs;
  }

  private view(id: string, source: ReviewSource, now: number): ItemView {
    const state = this.states.get(id);
    const r = source.record;
    const claim = state?.claim && statusOf(state) === 'open' && state.claim.until > now ? state.claim : undefined;
    const fields: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(r)) if (!COMMON_REVIEW_FIELDS.has(name)) fields[name] = value;
    return {
      item_id: id,
      pipeline: this.pipeline,
      event_id: r.event_id,
      kind: source.kind,
      status: statusOf(state),
      decision: r.decision,
      decided_by: r.decided_by,
      decision_version: r.decision_version,
      score: r.score,
      reasons: [...r.reasons],
      payload: r.payload,
      fields,
      model_version: r.model_version,
      policy_version: r.policy_version,
      occurred_at: r.occurred_at,
      created_at: r.decided_at,
      due_at: this.dueAt(source),
      claimed_by: claim?.by ?? null,
      claim_expires_at: claim?.until ?? null,
      resolution: state?.resolution ?? null,
      superseded_by: state?.superseded ? { replay_id: state.superseded.replayId, decision: state.superseded.decision, decision_version: state.superseded.decisionVersion } : null,
    };
  }
}

function statusOf(state: ItemState | undefined): ItemStatus {
  if (state?.superseded && !state.resolution) return 'superseded';
  if (!state?.resolution) return 'open';
  return state.resolution.outcome === 'expired' ? 'expired' : 'resolved';
}
