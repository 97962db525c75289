/**
 * The review service's API against the real local stack: a signup-risk
 * instance with its three stages running, whose decide stage sends edge cases
 * to `<p>.review`; the service (in this process) serves them. Sessions and
 * CSRF, claims and their conflicts, the answers it refuses, exactly one human
 * decision per item, a queue that survives a restart, and the audit items the
 * decide stage samples from its automatic decisions; the pipeline's sink puts
 * the labels in ClickHouse, where the documented review queries count them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DecisionRecord, ReviewRecord } from '../../lib/contracts.ts';
import { runDocumentedQuery } from '../../connectors/clickhouse/analytics.ts';
import { createClickHouse } from '../../connectors/clickhouse/client.ts';
import { pipelineByName } from '../../pipelines/registry.ts';
import { auditPosition, auditRateOf, auditSampled } from '../../processors/decide/audit.ts';
import type { ReviewConfig } from '../../review/config.ts';
import type { ItemView } from '../../review/queue.ts';
import type { RunningSink } from '../../processors/sink/runner.ts';
import type { RunningReview } from '../../review/server.ts';
import { ApiClient, dropReviewTopics, dropSinkRows, readDecidedUpTo, reviewConfig, reviewer, startReview, startSink, waitFor } from '../browser/review-support.ts';
import { connections, uniqueName } from '../helpers.ts';
import { type Collector, PipelineInstance } from '../pipeline-harness.ts';

type Decided = DecisionRecord & Record<string, unknown>;

describe('review service API', () => {
  let instance: PipelineInstance;
  let config: ReviewConfig;
  let service: RunningReview;
  let decided: Collector<Decided>;
  let feedback: Collector<Record<string, unknown>>;
  let review: Collector<ReviewRecord>;
  let sink: RunningSink | undefined;
  const clickhouse = createClickHouse({ url: connections.clickhouseUrl });
  let alice: ApiClient;
  let bob: ApiClient;
  let admin: ApiClient;
  /** The open review items (kind review) at the start; audit items are tested on their own. */
  let items: ItemView[];
  const base = () => `/api/pipelines/${instance.name}`;

  before(async () => {
    instance = await PipelineInstance.create('rv-api');
    [decided, review] = await Promise.all([instance.collect<Decided>('decided'), instance.collect<ReviewRecord>('review')]);
    config = reviewConfig([instance.name]);
    service = await startReview(config);
    feedback = await instance.collect<Record<string, unknown>>('feedback');
    sink = await startSink(clickhouse, instance.name);
    await instance.start();
    const plugin = pipelineByName(instance.name).plugin;
    const generated = [...plugin.generator.events({ seed: 7, count: 3_000, startMs: Date.now(), spacingMs: 10, idPrefix: uniqueName('rv') })];
    // 300 events, and five more whose ids fall in the audit sample, so the run has audit items whatever its ids.
    const events = [...generated.slice(0, 300), ...generated.slice(300).filter((e) => auditPosition(e.eventId) < auditRateOf(plugin)).slice(0, 5)];
    await instance.produce(events.map((event) => ({ key: event.key, value: event.value })));
    await review.until('at least five review requests', (messages) => messages.length >= 5, 120_000);
    const accounts = await Promise.all([reviewer(config, 'alice'), reviewer(config, 'bob'), reviewer(config, 'root', 'admin')]);
    [alice, bob, admin] = accounts.map(() => new ApiClient(service.url)) as [ApiClient, ApiClient, ApiClient];
    // The CLI wrote the accounts; the service sees them once its follower has read them.
    await waitFor('accounts visible to the service', () => accounts.every((a) => service.store.accounts.get(a.username)));
    for (const [client, account] of [[alice, accounts[0]], [bob, accounts[1]], [admin, accounts[2]]] as const) await client.activate(account.username, account.password);
    items = await waitFor('the review requests in the queue', async () => {
      const answer = await alice.request<{ items: ItemView[] }>('GET', `${base()}/items?status=open`);
      return answer.status === 200 && answer.body.items.length >= review.messages.length ? answer.body.items.filter((i) => i.kind === 'review') : undefined;
    });
  });

  after(async () => {
    await service?.stop();
    if (instance) await dropSinkRows(clickhouse, instance.name, sink);
    await clickhouse.close();
    await instance?.stop();
    if (config) await dropReviewTopics(config);
  });

  it('signs in with a cookie that is HttpOnly and SameSite, and answers a CSRF token', async () => {
    const client = new ApiClient(service.url);
    const { password } = await reviewer(config, 'carol');
    await waitFor('carol visible', () => service.store.accounts.get('carol'));
    const answer = await client.signIn('carol', password);
    assert.equal(answer.status, 200);
    assert.equal(typeof answer.body['csrf_token'], 'string');
    const cookie = answer.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^sluice_review_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+/);
    const wrong = await new ApiClient(service.url).signIn('carol', `${password}x`);
    assert.deepEqual([wrong.status, (wrong.body['error'] as { code: string }).code], [401, 'INVALID_CREDENTIALS']);
    const unknown = await new ApiClient(service.url).signIn('nobody', password);
    assert.deepEqual([unknown.status, (unknown.body['error'] as { code: string }).code], [401, 'INVALID_CREDENTIALS']);
  });

  it('the printed password is one-time: the first sign-in may only replace it', async () => {
    const { password } = await reviewer(config, 'gina');
    await waitFor('gina visible', () => service.store.accounts.get('gina'));
    const client = new ApiClient(service.url);
    const first = await client.signIn('gina', password);
    assert.equal(first.body['must_change_password'], true);
    const blocked = await client.request('GET', `${base()}/items?status=open`);
    assert.deepEqual([blocked.status, (blocked.body['error'] as { code: string }).code], [403, 'PASSWORD_CHANGE_REQUIRED']);
    const wrongCurrent = await client.request('POST', '/api/session/password', { current_password: 'not-it', new_password: 'a-long-enough-password' });
    assert.deepEqual([wrongCurrent.status, (wrongCurrent.body['error'] as { code: string }).code], [400, 'WRONG_PASSWORD']);
    const short = await client.request('POST', '/api/session/password', { current_password: password, new_password: 'short' });
    assert.deepEqual([short.status, (short.body['error'] as { code: string }).code], [400, 'PASSWORD_TOO_WEAK']);
    const changed = await client.request('POST', '/api/session/password', { current_password: password, new_password: 'gina-chose-this-one' });
    assert.equal(changed.status, 204);
    assert.equal((await client.request('GET', `${base()}/items?status=open`)).status, 200);
    const again = await new ApiClient(service.url).signIn('gina', password);
    assert.deepEqual([again.status, (again.body['error'] as { code: string }).code], [401, 'INVALID_CREDENTIALS']);
    const mine = await new ApiClient(service.url).signIn('gina', 'gina-chose-this-one');
    assert.deepEqual([mine.status, mine.body['must_change_password']], [200, false]);
  });

  it('answers 401 UNAUTHENTICATED without a session, on reads and on every action', async () => {
    const anonymous = new ApiClient(service.url);
    const id = items[0]!.item_id;
    for (const [method, path, body] of [
      ['GET', `${base()}/items?status=open`, undefined],
      ['POST', `${base()}/items/${id}/claim`, undefined],
      ['POST', `${base()}/items/${id}/resolve`, { decision: 'approve', reason: 'x' }],
    ] as const) {
      const answer = await anonymous.request(method, path, body);
      assert.equal(answer.status, 401, `${method} ${path}`);
      assert.equal((answer.body['error'] as { code: string }).code, 'UNAUTHENTICATED');
    }
  });

  it('lists open items with what a reviewer needs, soonest due first', () => {
    const reviewed = new Set(review.messages.filter((m) => (m.value as { kind?: string }).kind !== 'audit').map((m) => m.value.event_id));
    assert.equal(items.length, reviewed.size);
    for (const item of items) {
      assert.ok(reviewed.has(item.event_id));
      assert.equal(item.kind, 'review');
      assert.equal(item.decision, 'review');
      assert.equal(item.status, 'open');
      assert.equal(item.claimed_by, null);
      assert.ok(Array.isArray(item.reasons) && item.reasons.length > 0);
      assert.equal(typeof (item.payload as { user_id: string }).user_id, 'string');
      assert.ok(item.due_at > item.created_at);
    }
    assert.deepEqual(items.map((i) => i.due_at), [...items.map((i) => i.due_at)].sort((a, b) => a - b));
  });

  it('refuses a state change without the CSRF token (403 CSRF_TOKEN_INVALID), and an admin action to a reviewer (403 FORBIDDEN)', async () => {
    const id = items[0]!.item_id;
    const noToken = await alice.request('POST', `${base()}/items/${id}/claim`, undefined, { csrf: null });
    assert.deepEqual([noToken.status, (noToken.body['error'] as { code: string }).code], [403, 'CSRF_TOKEN_INVALID']);
    const wrongToken = await alice.request('POST', `${base()}/items/${id}/claim`, undefined, { csrf: bob.csrf! });
    assert.deepEqual([wrongToken.status, (wrongToken.body['error'] as { code: string }).code], [403, 'CSRF_TOKEN_INVALID']);
    const asReviewer = await alice.request('POST', '/api/reviewers', { username: 'mallory' });
    assert.deepEqual([asReviewer.status, (asReviewer.body['error'] as { code: string }).code], [403, 'FORBIDDEN']);
    const asAdmin = await admin.request('POST', '/api/reviewers', { username: 'dave' });
    assert.equal(asAdmin.status, 201);
    assert.equal(typeof asAdmin.body['password'], 'string');
    const list = await admin.request<{ reviewers: Array<{ username: string }> }>('GET', '/api/reviewers');
    assert.ok(list.body.reviewers.some((r) => r.username === 'dave'));
    assert.ok(!JSON.stringify(list.body).includes('scrypt'), 'hashes never leave the service');
  });

  it('refuses a sixth failed sign-in for a name within 15 minutes (429 TOO_MANY_ATTEMPTS)', async () => {
    const client = new ApiClient(service.url);
    for (let i = 0; i < 5; i++) {
      const answer = await client.signIn('mallory', `guess-${i}`);
      assert.deepEqual([answer.status, (answer.body['error'] as { code: string }).code], [401, 'INVALID_CREDENTIALS']);
    }
    const blocked = await client.signIn('mallory', 'guess-5');
    assert.deepEqual([blocked.status, (blocked.body['error'] as { code: string }).code], [429, 'TOO_MANY_ATTEMPTS']);
    assert.ok(Number(blocked.headers.get('retry-after')) > 0);
  });

  it('only the holder releases a claim; then another reviewer may take it', async () => {
    const id = items[4]!.item_id;
    assert.equal((await alice.request('POST', `${base()}/items/${id}/claim`)).status, 200);
    const notHers = await bob.request('POST', `${base()}/items/${id}/release`);
    assert.deepEqual([notHers.status, (notHers.body['error'] as { code: string }).code], [409, 'CLAIMED_BY_OTHER']);
    const released = await alice.request<{ item: ItemView }>('POST', `${base()}/items/${id}/release`);
    assert.deepEqual([released.status, released.body.item.claimed_by], [200, null]);
    const taken = await bob.request<{ item: ItemView }>('POST', `${base()}/items/${id}/claim`);
    assert.deepEqual([taken.status, taken.body.item.claimed_by], [200, 'bob']);
  });

  it('a claim is a 10-minute lease; another reviewer gets 409 CLAIMED_BY_OTHER, to claim and to resolve', async () => {
    const id = items[0]!.item_id;
    const before = Date.now();
    const claimed = await alice.request<{ item: ItemView }>('POST', `${base()}/items/${id}/claim`);
    assert.equal(claimed.status, 200);
    assert.equal(claimed.body.item.claimed_by, 'alice');
    const lease = claimed.body.item.claim_expires_at! - before;
    assert.ok(lease >= 595_000 && lease <= 605_000, `lease ${lease} ms`);
    const taken = await bob.request('POST', `${base()}/items/${id}/claim`);
    assert.deepEqual([taken.status, (taken.body['error'] as { code: string }).code], [409, 'CLAIMED_BY_OTHER']);
    const resolveTaken = await bob.request('POST', `${base()}/items/${id}/resolve`, { decision: 'block', reason: 'mine now' });
    assert.deepEqual([resolveTaken.status, (resolveTaken.body['error'] as { code: string }).code], [409, 'CLAIMED_BY_OTHER']);
    const listed = await bob.request<{ items: ItemView[] }>('GET', `${base()}/items?status=open`);
    assert.equal(listed.body.items.find((i) => i.item_id === id)?.claimed_by, 'alice');
  });

  it('refuses an answer without a reason (400 REASON_REQUIRED) or with a decision the pipeline does not allow (400 DECISION_NOT_ALLOWED)', async () => {
    const id = items[0]!.item_id;
    const noReason = await alice.request('POST', `${base()}/items/${id}/resolve`, { decision: 'approve' });
    assert.deepEqual([noReason.status, (noReason.body['error'] as { code: string }).code], [400, 'REASON_REQUIRED']);
    const notAllowed = await alice.request('POST', `${base()}/items/${id}/resolve`, { decision: 'review', reason: 'not sure' });
    assert.deepEqual([notAllowed.status, (notAllowed.body['error'] as { code: string }).code], [400, 'DECISION_NOT_ALLOWED']);
    const unknown = await alice.request('POST', `${base()}/items/${id}/resolve`, { decision: 'maybe', reason: 'x' });
    assert.deepEqual([unknown.status, (unknown.body['error'] as { code: string }).code], [400, 'DECISION_NOT_ALLOWED']);
    const missing = await alice.request('POST', `${base()}/items/nope/claim`);
    assert.deepEqual([missing.status, (missing.body['error'] as { code: string }).code], [404, 'ITEM_NOT_FOUND']);
    const still = await alice.request<{ item: ItemView }>('GET', `${base()}/items/${id}`);
    assert.equal(still.body.item.status, 'open', 'a refused answer changes nothing');
  });

  it('a resolution writes exactly one human decision above the model’s, and its label; a second resolve answers 409 with no second decision', async () => {
    const item = items[0]!;
    const resolved = await alice.request<{ item: ItemView }>('POST', `${base()}/items/${item.item_id}/resolve`, { decision: 'approve', reason: 'known customer' });
    assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
    assert.equal(resolved.body.item.status, 'resolved');
    assert.equal(resolved.body.item.resolution?.by, 'alice');
    const again = await alice.request('POST', `${base()}/items/${item.item_id}/resolve`, { decision: 'block', reason: 'changed my mind' });
    assert.deepEqual([again.status, (again.body['error'] as { code: string }).code], [409, 'ALREADY_RESOLVED']);
    const byBob = await bob.request('POST', `${base()}/items/${item.item_id}/resolve`, { decision: 'block', reason: 'me too' });
    assert.deepEqual([byBob.status, (byBob.body['error'] as { code: string }).code], [409, 'ALREADY_RESOLVED']);
    const claimAfter = await bob.request('POST', `${base()}/items/${item.item_id}/claim`);
    assert.deepEqual([claimAfter.status, (claimAfter.body['error'] as { code: string }).code], [409, 'ALREADY_RESOLVED']);

    const model = decided.messages.find((m) => m.value.event_id === item.event_id && m.value.decided_by !== 'human')!;
    await readDecidedUpTo(instance, decided, model.key!, model.value);
    const human = decided.messages.filter((m) => m.value.event_id === item.event_id && m.value.decided_by === 'human');
    assert.equal(human.length, 1, 'exactly one human decision');
    const decision = human[0]!.value;
    assert.equal(decision.decision, 'approve');
    assert.equal(decision.decision_version, model.value.decision_version + 1);
    assert.ok(decision.reasons.includes('reviewed_by:alice'));
    assert.ok(decision.reasons.includes(`corrects_decision_version:${model.value.decision_version}`));
    assert.equal(human[0]!.key, model.key, 'the key is kept, so order per key holds');
    assert.equal(human[0]!.partition, model.partition);

    const labels = await feedback.until('the label', (messages) => messages.some((m) => m.value['event_id'] === item.event_id));
    const label = labels.find((m) => m.value['event_id'] === item.event_id)!.value;
    assert.deepEqual(
      [label['label'], label['reviewer'], label['reason'], label['original_decision'], label['decision_version'], label['model_version']],
      ['approve', 'alice', 'known customer', 'review', decision.decision_version, model.value.model_version],
    );
  });

  it('two resolves at once (a double click) yield one 200, one 409 and one decision', async () => {
    const item = items[1]!;
    const answers = await Promise.all([
      bob.request('POST', `${base()}/items/${item.item_id}/resolve`, { decision: 'block', reason: 'fraud ring' }),
      bob.request('POST', `${base()}/items/${item.item_id}/resolve`, { decision: 'block', reason: 'fraud ring' }),
    ]);
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 409]);
    assert.equal((answers.find((a) => a.status === 409)!.body['error'] as { code: string }).code, 'ALREADY_RESOLVED');
    const model = decided.messages.find((m) => m.value.event_id === item.event_id && m.value.decided_by !== 'human')!;
    await readDecidedUpTo(instance, decided, model.key!, model.value);
    assert.equal(decided.messages.filter((m) => m.value.event_id === item.event_id && m.value.decided_by === 'human').length, 1);
  });

  it('two instances resolving the same items at once write one decision each: one answers 200, the other 409', async () => {
    // items[3], and up to five more no other test touches: each a race between the two instances.
    const raced = [items[3]!, ...items.slice(5, 10)];
    const second = await startReview({ ...config, instanceId: `${config.instanceId}-b` });
    try {
      const other = new ApiClient(second.url);
      other.cookie = alice.cookie;
      other.csrf = alice.csrf;
      const results = await Promise.all(
        raced.map(async (item) => {
          const answers = await Promise.all([
            alice.request('POST', `${base()}/items/${item.item_id}/resolve`, { decision: 'approve', reason: 'instance a' }),
            other.request('POST', `${base()}/items/${item.item_id}/resolve`, { decision: 'block', reason: 'instance b' }),
          ]);
          return { item, answers };
        }),
      );
      for (const { item, answers } of results) {
        assert.deepEqual(answers.map((a) => a.status).sort(), [200, 409], `${item.event_id}: ${JSON.stringify(answers.map((a) => a.body))}`);
        assert.ok(['ALREADY_RESOLVED', 'RESOLUTION_IN_PROGRESS'].includes((answers.find((a) => a.status === 409)!.body['error'] as { code: string }).code));
        const model = decided.messages.find((m) => m.value.event_id === item.event_id && m.value.decided_by !== 'human')!;
        await readDecidedUpTo(instance, decided, model.key!, model.value);
        const human = decided.messages.filter((m) => m.value.event_id === item.event_id && m.value.decided_by === 'human');
        assert.equal(human.length, 1, `one human decision for ${item.event_id}`);
        const winner = answers.find((a) => a.status === 200)!.body as { item: ItemView };
        assert.equal(human[0]!.value.decision, winner.item.resolution?.decision);
        // Both instances show the same outcome.
        const seen = await waitFor('the resolution on the second instance', async () => {
          const answer = await other.request<{ item: ItemView }>('GET', `${base()}/items/${item.item_id}`);
          return answer.body.item?.status === 'resolved' ? answer.body.item : undefined;
        });
        assert.deepEqual(seen.resolution, winner.item.resolution);
      }
    } finally {
      await second.stop();
    }
  });

  it('a restart of the service keeps the queue: open items, claims and resolutions', async () => {
    const claimedId = items[2]!.item_id;
    assert.equal((await bob.request('POST', `${base()}/items/${claimedId}/claim`)).status, 200);
    const beforeRestart = (await bob.request<{ items: ItemView[] }>('GET', `${base()}/items?status=all`)).body.items;
    await service.stop();
    service = await startReview({ ...config, instanceId: `${config.instanceId}-2` });
    for (const client of [alice, bob]) (client as { baseUrl: string }).baseUrl = service.url;
    // The session lives in Kafka too: no new sign-in.
    const afterRestart = await waitFor('the queue after the restart', async () => {
      const answer = await bob.request<{ items: ItemView[] }>('GET', `${base()}/items?status=all`);
      return answer.status === 200 && answer.body.items.length === beforeRestart.length ? answer.body.items : undefined;
    });
    const strip = (list: ItemView[]) => list.map(({ item_id, status, claimed_by, claim_expires_at, resolution, decision_version }) => ({ item_id, status, claimed_by, claim_expires_at, resolution, decision_version }));
    assert.deepEqual(strip(afterRestart), strip(beforeRestart));
    assert.equal(afterRestart.find((i) => i.item_id === claimedId)?.claimed_by, 'bob');
    assert.equal(afterRestart.filter((i) => i.status === 'resolved').length, 2 + Math.min(items.length, 10) - 4);
    const again = await alice.request('POST', `${base()}/items/${items[0]!.item_id}/resolve`, { decision: 'block', reason: 'after restart' });
    assert.deepEqual([again.status, (again.body['error'] as { code: string }).code], [409, 'ALREADY_RESOLVED']);
    const taken = await alice.request('POST', `${base()}/items/${claimedId}/claim`);
    assert.deepEqual([taken.status, (taken.body['error'] as { code: string }).code], [409, 'CLAIMED_BY_OTHER']);
  });

  it('the decide stage samples automatic decisions for audit by event id: exactly those are audit items; confirming one writes a label and no decision', async () => {
    await instance.waitForIdle();
    const rate = auditRateOf(pipelineByName(instance.name).plugin);
    const automatic = decided.messages.filter((m) => m.value.decision_version === 1 && m.value.decision !== 'review');
    const expected = automatic.filter((m) => auditSampled(m.value, 'review', rate)).map((m) => m.value.event_id).sort();
    assert.ok(expected.length > 0, 'the run has automatic decisions in the audit sample');
    const audits = await waitFor('the audit items', async () => {
      const answer = await alice.request<{ items: ItemView[] }>('GET', `${base()}/items?status=all`);
      const found = answer.body.items.filter((i) => i.kind === 'audit');
      return found.length >= expected.length ? found : undefined;
    });
    assert.deepEqual(audits.map((i) => i.event_id).sort(), expected);
    for (const audit of audits) {
      assert.ok(['approve', 'block'].includes(audit.decision) && ['model', 'rule'].includes(audit.decided_by), `${audit.event_id}: an automatic decision`);
      assert.equal(typeof (audit.payload as { user_id: string }).user_id, 'string', 'with the payload the reviewer checks');
    }
    const audit = audits[0]!;
    const confirmed = await alice.request<{ item: ItemView }>('POST', `${base()}/items/${audit.item_id}/resolve`, { decision: audit.decision, reason: 'right call' });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    assert.equal(confirmed.body.item.resolution?.decision_version, 1, 'the automatic decision stands');
    const labels = await feedback.until('the audit label', (messages) => messages.some((m) => m.value['event_id'] === audit.event_id));
    const label = labels.find((m) => m.value['event_id'] === audit.event_id)!.value;
    assert.deepEqual([label['kind'], label['label'], label['original_decision'], label['decision_version']], ['audit', audit.decision, audit.decision, 1]);
    const model = decided.messages.find((m) => m.value.event_id === audit.event_id)!;
    await readDecidedUpTo(instance, decided, model.key!, model.value);
    assert.equal(decided.messages.filter((m) => m.value.event_id === audit.event_id).length, 1, 'no second decision for a confirmed audit');

    // In ClickHouse, through the sink: every label once, and the documented review queries count them.
    const labeled = new Set(feedback.messages.map((m) => String(m.value['event_id'])));
    const volume = await waitFor('every label in ClickHouse', async () => {
      const rows = await runDocumentedQuery(clickhouse, 'review-volume', { pipeline: instance.name });
      return rows.reduce((n, r) => n + Number(r['labels']), 0) === labeled.size ? rows : undefined;
    });
    assert.ok(volume.some((r) => r['item_kind'] === 'audit' && Number(r['labels']) >= 1));
    const performance = await runDocumentedQuery(clickhouse, 'realized-performance', { pipeline: instance.name });
    const row = performance.find((r) => r['model'] === audit.model_version && r['class'] === audit.decision);
    assert.ok(row && Number(row['predicted_events']) >= 1 && Number(row['confirmed']) >= 1, `the confirmed audit counts toward ${audit.decision}'s precision: ${JSON.stringify(performance)}`);
  });

  it('describes its API at /openapi.json', async () => {
    const answer = await new ApiClient(service.url).request<{ openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }>('GET', '/openapi.json');
    assert.equal(answer.status, 200);
    assert.equal(answer.body.openapi, '3.1.0');
    const resolve = answer.body.paths['/api/pipelines/{pipeline}/items/{item_id}/resolve']?.['post'];
    assert.deepEqual(Object.keys(resolve?.responses ?? {}).sort(), ['200', '400', '401', '403', '404', '409', '503']);
    for (const path of ['/api/session', '/api/pipelines/{pipeline}/items', '/api/pipelines/{pipeline}/items/{item_id}/claim']) assert.ok(answer.body.paths[path], path);
  });
});
