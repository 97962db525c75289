/**
 * The review web UI in a real Chromium (Debian's `chromium` package, driven by
 * playwright-core; SLUICE_CHROMIUM names another binary), against the real
 * local stack: sign in, see the queue, open an item, claim it, correct the
 * decision with a reason; the decided topic then holds the human decision one
 * version above the model's, and ClickHouse (through the pipeline's sink) the
 * label and the decision with its reviewer. Keyboard shortcuts, and what the page says when
 * someone else holds an item. Leaves a screenshot of the item page in
 * .sluice/logs/tests/review-item.png.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { createClickHouse } from '../../connectors/clickhouse/client.ts';
import { stackPaths } from '../../deploy/local/stack.ts';
import type { DecisionRecord } from '../../lib/contracts.ts';
import type { ReviewConfig } from '../../review/config.ts';
import { itemIdOf } from '../../review/queue.ts';
import type { RunningSink } from '../../processors/sink/runner.ts';
import type { RunningReview } from '../../review/server.ts';
import {
  ApiClient,
  dropReviewTopics,
  dropSinkRows,
  labelsInClickHouse,
  produceReviews,
  reviewConfig,
  reviewer,
  standingDecision,
  startReview,
  startSink,
  waitFor,
} from '../browser/review-support.ts';
import { connections, uniqueName } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

type Decided = DecisionRecord & Record<string, unknown>;
const CHROMIUM = process.env['SLUICE_CHROMIUM'] ?? '/usr/bin/chromium';

function ticketReview(pipeline: string, eventId: string, summary: string, decidedAt: number): Record<string, unknown> {
  return {
    event_id: eventId,
    pipeline,
    decision: 'review',
    decided_by: 'model',
    reasons: ['below_route_threshold'],
    score: 0.48,
    model_version: 'ticket-triage-test',
    policy_version: 'pv-test',
    decision_version: 1,
    occurred_at: decidedAt - 2_000,
    decided_at: decidedAt,
    queue: 'billing',
    priority: 'P3',
    payload: { ticket: { ticket_key: 'SUP-42', project: 'SUP', summary, description: 'The export button throws an error since Monday.', reporter_email: null, labels: ['export'], priority_hint: null }, document: null },
  };
}

describe('review web UI in Chromium', () => {
  let instance: PipelineInstance;
  let config: ReviewConfig;
  let service: RunningReview;
  let decided: Collector<Decided>;
  let sink: RunningSink | undefined;
  const clickhouse = createClickHouse({ url: connections.clickhouseUrl });
  let browser: Browser;
  let page: Page;
  let password: string;
  const prefix = uniqueName('ui');
  const firstId = `${prefix}-export-bug`;
  const secondId = `${prefix}-held`;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `No Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set SLUICE_CHROMIUM.`);
    instance = await PipelineInstance.create('rv-ui', {}, 'ticket-triage');
    decided = await instance.collect<Decided>('decided');
    sink = await startSink(clickhouse, instance.name);
    config = reviewConfig([instance.name]);
    service = await startReview(config);
    const now = Date.now();
    await produceReviews(instance, [ticketReview(instance.name, firstId, 'Export fails with error 500', now - 60_000), ticketReview(instance.name, secondId, 'Invoice question', now)]);
    ({ password } = await reviewer(config, 'frank'));
    const bob = await reviewer(config, 'bob');
    await waitFor('accounts visible', () => service.store.accounts.get('frank') && service.store.accounts.get('bob'));
    await waitFor('both items in the queue', () => service.store.desk(instance.name).queue.list('open', Date.now()).length === 2);
    // bob holds the second item.
    const api = new ApiClient(service.url);
    await api.activate(bob.username, bob.password);
    assert.equal((await api.request('POST', `/api/pipelines/${instance.name}/items/${itemIdOf(instance.name, secondId)}/claim`)).status, 200);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });

  after(async () => {
    await browser?.close();
    await service?.stop();
    if (instance) await dropSinkRows(clickhouse, instance.name, sink);
    await clickhouse.close();
    await instance?.stop();
    if (config) await dropReviewTopics(config);
  });

  it('signs in, replaces the one-time password; the session cookie is out of reach of scripts', async () => {
    await page.goto(service.url);
    await page.locator('#signin').waitFor({ state: 'visible' });
    await page.fill('#username', 'frank');
    await page.fill('#password', 'wrong-password');
    await page.click('#signin-form button[type=submit]');
    await page.locator('#notice.error', { hasText: 'Wrong user name or password' }).waitFor();
    await page.fill('#password', password);
    await page.click('#signin-form button[type=submit]');
    // The printed password was one-time: the page asks for a new one first.
    await page.locator('#choose-password').waitFor({ state: 'visible' });
    await page.fill('#new-password', 'frank-chose-a-password');
    await page.fill('#repeat-password', 'frank-chose-a-password');
    await page.click('#password-form button[type=submit]');
    await page.locator('#queue').waitFor({ state: 'visible' });
    assert.equal(await page.textContent('#whoami'), 'frank (reviewer)');
    assert.equal(await page.evaluate('document.cookie'), '', 'HttpOnly: no script sees the session');
  });

  it('shows the queue, soonest due first', async () => {
    const rows = page.locator('#items tr');
    await waitFor('two rows', async () => (await rows.count()) === 2);
    assert.equal(await rows.nth(0).locator('td').nth(1).textContent(), firstId);
    assert.equal(await rows.nth(1).locator('td').nth(6).textContent(), 'bob');
    // The pipeline's review settings, from its manifest (ticket-triage: 2 h, then routed; 2% audited).
    assert.match((await page.textContent('#queue-count')) ?? '', /^2 items · SLA 2 h, then route · 2% of automatic decisions audited$/);
  });

  it('says clearly when someone else holds an item (keyboard: j, Enter, c)', async () => {
    await page.keyboard.press('j');
    await page.keyboard.press('Enter');
    await page.locator('#item-event', { hasText: secondId }).waitFor();
    assert.equal(await page.textContent('#item-status'), 'claimed by bob');
    assert.equal(await page.isVisible('#resolve-form'), false, 'no resolve form on an item someone else holds');
    await page.keyboard.press('c');
    await page.locator('#notice.error', { hasText: 'Taken by someone else' }).waitFor();
    await page.keyboard.press('Escape');
    await page.locator('#queue').waitFor({ state: 'visible' });
  });

  it('opens an item, claims it, corrects the decision with a reason: one human decision, one version up', async () => {
    await page.locator('#items tr', { hasText: firstId }).click();
    await page.locator('#item-event', { hasText: firstId }).waitFor();
    const facts = await page.textContent('#item-facts');
    for (const text of ['review (by model, version 1)', 'proposed queue', 'billing', '0.4800', 'below_route_threshold', 'ticket-triage-test', 'pv-test']) assert.ok(facts?.includes(text), `item page shows ${text}`);
    assert.ok((await page.textContent('#item-payload'))?.includes('Export fails with error 500'));
    await page.click('#claim');
    await page.locator('#item-status', { hasText: 'claimed by frank' }).waitFor();
    await page.selectOption('#decision', 'route');
    await page.selectOption('#field-queue', 'bug');
    await page.selectOption('#field-priority', 'P2');
    await page.fill('#reason', 'An export defect, not a billing question');
    mkdirSync(join(stackPaths().logs, 'tests'), { recursive: true });
    await page.screenshot({ path: join(stackPaths().logs, 'tests', 'review-item.png'), fullPage: true });
    await page.click('#resolve');
    await page.locator('#notice.ok', { hasText: 'Resolved: route (decision version 2)' }).waitFor();
    assert.equal(await page.textContent('#item-status'), 'resolved');

    const messages = await decided.until('the human decision', (all) => all.some((m) => m.value.event_id === firstId));
    const human = messages.filter((m) => m.value.event_id === firstId);
    assert.equal(human.length, 1);
    assert.deepEqual(
      [human[0]!.value.decision, human[0]!.value.decided_by, human[0]!.value.decision_version, human[0]!.value['queue'], human[0]!.value['priority']],
      ['route', 'human', 2, 'bug', 'P2'],
    );
    assert.ok(human[0]!.value.reasons.includes('reviewed_by:frank'));
    assert.deepEqual([human[0]!.value['reviewed_by'], human[0]!.value['review_reason'], human[0]!.value['corrects_decision_version']], ['frank', 'An export defect, not a billing question', 1]);

    // ClickHouse holds the label (the sink reads <p>.feedback) and the human decision as the one that stands.
    const [label, ...more] = await waitFor('the label in ClickHouse', async () => {
      const rows = await labelsInClickHouse(clickhouse, instance.name, firstId);
      return rows.length > 0 ? rows : undefined;
    });
    assert.equal(more.length, 0, 'one label');
    assert.deepEqual(
      [label!.kind, label!.label, label!.label_field_names, label!.label_field_values, label!.reviewer, label!.reason, label!.original_decision, Number(label!.decision_version), label!.model_version],
      ['review', 'route', ['priority', 'queue'], ['P2', 'bug'], 'frank', 'An export defect, not a billing question', 'review', 2, 'ticket-triage-test'],
    );
    const standing = await waitFor('the human decision in ClickHouse', async () => {
      const row = await standingDecision(clickhouse, instance.name, firstId);
      return row && Number(row['version']) === 2 ? row : undefined;
    });
    assert.deepEqual([standing['standing'], standing['by'], standing['reviewer'], standing['reason'], Number(standing['corrects'])], ['route', 'human', 'frank', 'An export defect, not a billing question', 1]);
  });
});
