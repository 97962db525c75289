/**
 * ticket-triage items against the real local stack, with review requests put
 * on `<p>.review` as the decide stage writes them: the pipeline's own fields
 * (queue, priority) in the human decision, and the SLA expiring an item to the
 * fallback decision its manifest names (ticket-triage: route, to the proposed
 * queue), with the SLA shortened by SLUICE_REVIEW_SLA_SECONDS.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClickHouse } from '../../connectors/clickhouse/client.ts';
import type { DecisionRecord } from '../../lib/contracts.ts';
import type { ReviewConfig } from '../../review/config.ts';
import { itemIdOf, type ItemView } from '../../review/queue.ts';
import type { RunningSink } from '../../processors/sink/runner.ts';
import type { RunningReview } from '../../review/server.ts';
import {
  ApiClient,
  dropReviewTopics,
  dropSinkRows,
  labelsInClickHouse,
  produceReviews,
  readDecidedUpTo,
  reviewConfig,
  reviewer,
  startReview,
  startSink,
  waitFor,
} from '../browser/review-support.ts';
import { connections, uniqueName } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

type Decided = DecisionRecord & Record<string, unknown>;

function triageReview(eventId: string, decidedAt: number): Record<string, unknown> {
  return {
    event_id: eventId,
    pipeline: 'x',
    decision: 'review',
    decided_by: 'model',
    reasons: ['below_route_threshold'],
    score: 0.52,
    model_version: 'tt-test',
    policy_version: 'pv-test',
    decision_version: 1,
    occurred_at: decidedAt - 1_000,
    decided_at: decidedAt,
    queue: 'billing',
    priority: 'P3',
    payload: {
      ticket: { ticket_key: 'SUP-9', project: 'SUP', summary: 'Charged twice', description: 'My card was charged twice', reporter_email: null, labels: [], priority_hint: null },
      document: null,
    },
  };
}

describe('review service: ticket-triage fields and the SLA', () => {
  let instance: PipelineInstance;
  let config: ReviewConfig;
  let service: RunningReview;
  let decided: Collector<Decided>;
  let feedback: Collector<Record<string, unknown>>;
  let client: ApiClient;
  let sink: RunningSink | undefined;
  const clickhouse = createClickHouse({ url: connections.clickhouseUrl });
  const prefix = uniqueName('sla');
  const overdueId = `${prefix}-overdue`;
  const laterId = `${prefix}-later`;
  const auditConfirmId = `${prefix}-audit-confirm`;
  const auditOverrideId = `${prefix}-audit-override`;
  const auditExpiredId = `${prefix}-audit-expired`;
  /** An automatic decision sampled for audit, as the decide stage writes it: routed by the model, kind audit. */
  const audit = (eventId: string, decidedAt: number) => ({ ...triageReview(eventId, decidedAt), pipeline: instance.name, decision: 'route', reasons: ['model_confident'], score: 0.91, queue: 'bug', priority: 'P3', kind: 'audit' });

  before(async () => {
    instance = await PipelineInstance.create('rv-sla', {}, 'ticket-triage');
    decided = await instance.collect<Decided>('decided');
    sink = await startSink(clickhouse, instance.name);
    config = reviewConfig([instance.name], { SLUICE_REVIEW_SLA_SECONDS: '3' });
    service = await startReview(config);
    feedback = await instance.collect<Record<string, unknown>>('feedback');
    const now = Date.now();
    // One already past its SLA when it arrives; one due in ten minutes.
    await produceReviews(instance, [
      { ...triageReview(overdueId, now - 10_000), pipeline: instance.name },
      { ...triageReview(laterId, now + 600_000), pipeline: instance.name },
    ]);
    await produceReviews(instance, [audit(auditConfirmId, now + 600_000), audit(auditOverrideId, now + 600_000), audit(auditExpiredId, now - 10_000)]);
    const account = await reviewer(config, 'erin');
    await waitFor('erin visible', () => service.store.accounts.get('erin'));
    client = new ApiClient(service.url);
    await client.activate(account.username, account.password);
  });

  after(async () => {
    await service?.stop();
    if (instance) await dropSinkRows(clickhouse, instance.name, sink);
    await clickhouse.close();
    await instance?.stop();
    if (config) await dropReviewTopics(config);
  });

  it("an item past its due time expires to the manifest's fallback decision, decided_by fallback, once", async () => {
    await decided.until('the fallback decision', (messages) => messages.some((m) => m.value.event_id === overdueId));
    const decisions = decided.messages.filter((m) => m.value.event_id === overdueId);
    assert.equal(decisions.length, 1);
    const decision = decisions[0]!.value;
    // ticket-triage's manifest: an expired ticket is routed to the queue the model proposed, not left unrouted.
    assert.deepEqual([decision.decision, decision.decided_by, decision.decision_version, decision['queue'], decision['priority']], ['route', 'fallback', 2, 'billing', 'P3']);
    assert.ok(decision.reasons.includes('review_expired'));
    assert.deepEqual([decision['reviewed_by'], decision['review_reason'], decision['corrects_decision_version']], [null, 'review_expired', 1]);
    const item = await waitFor('the item shown as expired', async () => {
      const answer = await client.request<{ item: ItemView }>('GET', `/api/pipelines/${instance.name}/items/${itemIdOf(instance.name, overdueId)}`);
      return answer.body.item.status === 'expired' ? answer.body.item : undefined;
    });
    assert.equal(item.resolution?.outcome, 'expired');
    const late = await client.request('POST', `/api/pipelines/${instance.name}/items/${item.item_id}/resolve`, { decision: 'route', reason: 'late', queue: 'billing', priority: 'P2' });
    assert.deepEqual([late.status, (late.body['error'] as { code: string }).code], [409, 'ALREADY_RESOLVED']);
    // Later sweeps never expire it again.
    await readDecidedUpTo(instance, decided, decisions[0]!.key!, decision);
    assert.equal(decided.messages.filter((m) => m.value.event_id === overdueId).length, 1);
    assert.equal(feedback.messages.filter((m) => m.value['event_id'] === overdueId).length, 0, 'an expiry is not a label');
    // SLA breaches are counted for alerting (the overdue review item and the overdue audit sample).
    await waitFor('the expiry counter', async () => {
      const metrics = await (await fetch(`${service.url}/metrics`)).text();
      return metrics.includes(`sluice_review_expired_total{pipeline="${instance.name}"} 2`);
    });
  });

  it("a ticket-triage resolution needs the pipeline's queue and priority and carries them into the decision and the label", async () => {
    const id = itemIdOf(instance.name, laterId);
    const path = `/api/pipelines/${instance.name}/items/${id}/resolve`;
    await waitFor('the item in the queue', async () => (await client.request('GET', `/api/pipelines/${instance.name}/items/${id}`)).status === 200);
    const noQueue = await client.request('POST', path, { decision: 'route', reason: 'a bug', priority: 'P2' });
    assert.deepEqual([noQueue.status, (noQueue.body['error'] as { code: string }).code], [400, 'FIELD_REQUIRED']);
    const badQueue = await client.request('POST', path, { decision: 'route', reason: 'a bug', queue: 'sales', priority: 'P2' });
    assert.deepEqual([badQueue.status, (badQueue.body['error'] as { code: string }).code], [400, 'FIELD_INVALID']);
    const ok = await client.request<{ item: ItemView }>('POST', path, { decision: 'route', reason: 'a bug, not billing', queue: 'bug', priority: 'P2' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const [human] = (await decided.until('the human decision', (messages) => messages.some((m) => m.value.event_id === laterId))).filter((m) => m.value.event_id === laterId);
    assert.deepEqual([human!.value.decision, human!.value.decided_by, human!.value.decision_version, human!.value['queue'], human!.value['priority']], ['route', 'human', 2, 'bug', 'P2']);
    // The decision names its reviewer and reason and links to the decision it corrects.
    assert.deepEqual([human!.value['reviewed_by'], human!.value['review_reason'], human!.value['corrects_decision_version']], ['erin', 'a bug, not billing', 1]);
    const labels = await feedback.until('the label', (messages) => messages.some((m) => m.value['event_id'] === laterId));
    const label = labels.find((m) => m.value['event_id'] === laterId)!.value;
    assert.deepEqual([label['label'], label['label_fields'], label['reviewer']], ['route', { queue: 'bug', priority: 'P2' }, 'erin']);
  });

  it('an audit sample: confirming it writes a label and no decision; changing it writes the human decision', async () => {
    const path = (eventId: string) => `/api/pipelines/${instance.name}/items/${itemIdOf(instance.name, eventId)}`;
    const listed = await waitFor('the audit items', async () => {
      const answer = await client.request<{ items: ItemView[] }>('GET', `/api/pipelines/${instance.name}/items?status=all`);
      const audits = answer.body.items.filter((i) => i.kind === 'audit');
      return audits.length === 3 ? audits : undefined;
    });
    assert.deepEqual(listed.map((i) => i.decision), ['route', 'route', 'route']);
    const confirm = await client.request('POST', `${path(auditConfirmId)}/resolve`, { decision: 'route', reason: 'right queue', queue: 'bug', priority: 'P3' });
    assert.equal(confirm.status, 200, JSON.stringify(confirm.body));
    const change = await client.request('POST', `${path(auditOverrideId)}/resolve`, { decision: 'route', reason: 'a security report', queue: 'security', priority: 'P1' });
    assert.equal(change.status, 200, JSON.stringify(change.body));
    const expired = await waitFor('the expired audit', async () => {
      const answer = await client.request<{ item: ItemView }>('GET', path(auditExpiredId));
      return answer.body.item.status === 'expired' ? answer.body.item : undefined;
    });
    assert.equal(expired.resolution?.decision, 'route', 'the automatic decision stands');

    const labels = await feedback.until('both audit labels', (messages) => [auditConfirmId, auditOverrideId].every((id) => messages.some((m) => m.value['event_id'] === id)));
    const confirmLabel = labels.find((m) => m.value['event_id'] === auditConfirmId)!.value;
    assert.deepEqual([confirmLabel['kind'], confirmLabel['label'], confirmLabel['original_decision'], confirmLabel['decision_version']], ['audit', 'route', 'route', 1]);
    const overrideLabel = labels.find((m) => m.value['event_id'] === auditOverrideId)!.value;
    assert.deepEqual([overrideLabel['kind'], overrideLabel['label_fields'], overrideLabel['decision_version']], ['audit', { queue: 'security', priority: 'P1' }, 2]);

    const human = await decided.until('the overriding decision', (messages) => messages.some((m) => m.value.event_id === auditOverrideId));
    const override = human.filter((m) => m.value.event_id === auditOverrideId);
    assert.deepEqual([override.length, override[0]!.value.decided_by, override[0]!.value['queue'], override[0]!.value.decision_version], [1, 'human', 'security', 2]);
    // Read every partition the audits' keys landed on up to now: no decision for the confirmed or expired audit.
    for (const eventId of [auditConfirmId, auditExpiredId]) {
      await readDecidedUpTo(instance, decided, `key-${eventId}`, override[0]!.value);
      assert.equal(decided.messages.filter((m) => m.value.event_id === eventId).length, 0, `no decision for ${eventId}`);
    }
    // ClickHouse holds both audit labels, as audits: the confirmation at the automatic decision's version, the correction one above.
    const inClickHouse = await waitFor('the audit labels in ClickHouse', async () => {
      const rows = await Promise.all([auditConfirmId, auditOverrideId].map((id) => labelsInClickHouse(clickhouse, instance.name, id)));
      return rows.every((r) => r.length === 1) ? rows.map((r) => r[0]!) : undefined;
    });
    assert.deepEqual(
      inClickHouse.map((row) => [row.kind, row.label, row.label_field_values, row.original_decision, Number(row.original_decision_version), Number(row.decision_version), row.reviewer]),
      [
        ['audit', 'route', ['P3', 'bug'], 'route', 1, 1, 'erin'],
        ['audit', 'route', ['P1', 'security'], 'route', 1, 2, 'erin'],
      ],
    );
  });
});
