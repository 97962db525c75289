/**
 * The review service's Kafka side: it follows `<p>.review` and
 * `<p>.review-state` of every pipeline it serves (queue.ts applies them), the
 * accounts and sessions topics, and writes actions.
 *
 * - A claim is written to `<p>.review-state` and wins or loses by its place
 *   in that log (queue.ts); the writer waits until it has read its own record.
 * - A resolution (by a reviewer, or by the SLA sweep) must produce exactly one
 *   decision. Its writer opens a transactional producer whose id names the
 *   item, which fences any other writer of that item on any instance (the
 *   broker aborts what the fenced one left open); it then writes a sync record
 *   to the state topic and waits until it reads it back, so every resolution
 *   committed before has been applied; only if the item is still open does it
 *   write, in one transaction, the decision to `<p>.decided`, the label to
 *   `<p>.feedback` and the `resolved` record to `<p>.review-state`.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { checkTopics, ensureTopics, openAdmin, openProducer } from '../connectors/kafka/admin.ts';
import { type Follower, followTopic } from '../connectors/kafka/follow.ts';
import { openTransactionalProducer } from '../connectors/kafka/tx.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { type ReviewRecord, topicName } from '../lib/contracts.ts';
import { errorMessage } from '../lib/errors.ts';
import type { Logger } from '../lib/log.ts';
import type { PipelineInstance } from '../lib/pipeline.ts';
import { readAvsc } from '../lib/schemas.ts';
import { AccountBook, type AccountRecord, encodeJson, hashPassword, MIN_PASSWORD_CHARS, newPassword, newToken, type Role, SessionBook, type SessionRecord, sessionKey, USERNAME_FORMAT, verifyPassword } from './accounts.ts';
import type { ReviewConfig } from './config.ts';
import { ReviewError } from './errors.ts';
import { type Applied, type ItemView, ReviewQueue, type StateRecord, stateRecordSchema } from './queue.ts';
import { changesDecision, checkAnswer, expiredDecision, feedbackRecord, humanDecision, type ResolutionRules, type ResolveAnswer, resolutionRules } from './resolution.ts';
import { type PipelineReviewSettings, reviewSettingsOf } from './settings.ts';
import { compactedTopicSpec, stateTopicOf, stateTopicSpec } from './topics.ts';

/** How long a writer waits to read its own record back before answering 503. */
const READ_BACK_TIMEOUT_MS = 15_000;
/** How long start-up waits to read `<p>.review` to its end before serving what it has read. */
const REVIEWS_READ_TIMEOUT_MS = 15_000;
/** Items the SLA sweep expires per pipeline per pass, so one pass stays short. */
const EXPIRE_PER_SWEEP = 20;

export interface Desk {
  pipeline: PipelineInstance;
  queue: ReviewQueue;
  rules: ResolutionRules;
  /** SLA, fallback decision, lease and audit rate: the manifest's, under the environment's overrides. */
  settings: PipelineReviewSettings;
  encodeDecided(value: unknown): Buffer;
  encodeFeedback(value: unknown): Buffer;
  /** The state log has been read up to a sync record of this instance. */
  synced: boolean;
  /** `<p>.review` has been read to the end it had at start (or the wait for it gave up). */
  reviewsRead: boolean;
}

export interface ReviewStoreOptions {
  config: ReviewConfig;
  pipelines: PipelineInstance[];
  logger: Logger;
  now?: () => number;
  /** Called when a review request has been applied to a queue (the benchmark measures arrival with it). */
  onReviewApplied?(pipeline: string, itemId: string): void;
}

type Waiter = { resolve(applied: Applied): void; timer: NodeJS.Timeout };

export class ReviewStore {
  readonly accounts = new AccountBook();
  readonly sessions = new SessionBook();
  readonly desks = new Map<string, Desk>();
  readonly now: () => number;
  private readonly config: ReviewConfig;
  private readonly logger: Logger;
  private readonly onReviewApplied: ((pipeline: string, itemId: string) => void) | undefined;
  private readonly followers: Follower[] = [];
  private readonly waiters = new Map<string, Waiter>();
  /** Resolutions in flight on this instance, by pipeline/item: a second one waits for the first. */
  private readonly inFlight = new Map<string, Promise<unknown>>();
  private producer?: Awaited<ReturnType<typeof openProducer>>;
  private accountsReady = false;
  private sessionsReady = false;
  private sweepTimer?: NodeJS.Timeout;
  private sweeping = false;
  private closed = false;
  /** Items this instance expired, by pipeline (for /metrics: SLA breaches). */
  readonly expiredByPipeline = new Map<string, number>();

  private constructor(options: ReviewStoreOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.onReviewApplied = options.onReviewApplied;
  }

  /**
   * Checks the pipelines' topics and contracts, creates the service's own
   * topics if missing, and starts following them. Resolves once the accounts,
   * sessions and every state topic have been read to their end; items of
   * `<p>.review` keep arriving after that.
   */
  static async open(options: ReviewStoreOptions): Promise<ReviewStore> {
    const store = new ReviewStore(options);
    try {
      await store.start(options.pipelines);
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }

  private async start(pipelines: PipelineInstance[]): Promise<void> {
    const { config } = this;
    const brokers = config.connections.kafkaBrokers;
    // Every pipeline's settings are checked before any I/O: a bad manifest fails the start, naming itself.
    const settings = new Map(pipelines.map((p) => [p.name, reviewSettingsOf(p.plugin, { slaMs: config.slaMs, leaseMs: config.leaseMs })]));
    const needed = pipelines.flatMap((p) => [topicName(p.name, 'review'), topicName(p.name, 'decided'), topicName(p.name, 'feedback')]);
    await checkTopics(brokers, needed, { deadlineMs: 30_000, fix: 'npx sluice topics create --pipeline <pipeline>' });
    await ensureTopics(brokers, [
      compactedTopicSpec(config.reviewersTopic),
      compactedTopicSpec(config.sessionsTopic),
      ...pipelines.map((p) => stateTopicSpec(p.name)),
    ]);
    const catalog = new SchemaCatalog(config.connections.schemaRegistryUrl);
    for (const pipeline of pipelines) {
      // The label contract is the review service's own: registered (idempotently) by the service that writes it.
      await catalog.register(`${pipeline.name}.feedback-value`, readAvsc(join(pipeline.plugin.schemasDir, 'feedback.avsc')));
      this.desks.set(pipeline.name, {
        pipeline,
        queue: new ReviewQueue(pipeline.name, { slaMs: settings.get(pipeline.name)!.slaMs }),
        rules: resolutionRules(pipeline.plugin),
        settings: settings.get(pipeline.name)!,
        encodeDecided: await catalog.encoderFor(`${pipeline.name}.decided-value`),
        encodeFeedback: await catalog.encoderFor(`${pipeline.name}.feedback-value`),
        synced: false,
        reviewsRead: false,
      });
    }
    this.producer = await openProducer(brokers, `sluice-review-${config.instanceId}`);

    const accounts = await followTopic({
      brokers,
      topic: config.reviewersTopic,
      clientId: `sluice-review-accounts-${config.instanceId}`,
      logger: this.logger,
      onMessage: (m) => m.key !== null && this.accounts.apply(m.key, m.value),
    });
    this.followers.push(accounts);
    const sessions = await followTopic({
      brokers,
      topic: config.sessionsTopic,
      clientId: `sluice-review-sessions-${config.instanceId}`,
      logger: this.logger,
      onMessage: (m) => m.key !== null && this.sessions.apply(m.key, m.value),
    });
    this.followers.push(sessions);

    for (const desk of this.desks.values()) {
      const name = desk.pipeline.name;
      const state = await followTopic({
        brokers,
        topic: stateTopicOf(name),
        clientId: `sluice-review-state-${config.instanceId}`,
        logger: this.logger,
        onMessage: (m) => {
          if (m.value === null) return;
          const applied = desk.queue.applyState(stateRecordSchema.parse(JSON.parse(m.value.toString('utf8'))));
          const id = applied.type === 'sync' ? applied.token : applied.rid;
          const waiter = this.waiters.get(id);
          if (waiter) {
            this.waiters.delete(id);
            clearTimeout(waiter.timer);
            waiter.resolve(applied);
          }
        },
      });
      this.followers.push(state);
    }
    const reviewsRead = await Promise.all([...this.desks.values()].map((desk) => this.followReviews(desk, catalog)));
    await Promise.all([accounts.caughtUp, sessions.caughtUp]);
    this.accountsReady = true;
    this.sessionsReady = true;
    // The state topic carries transaction markers, so "read to its end" is having read a sync record written now.
    await Promise.all(
      [...this.desks.values()].map(async (desk) => {
        await this.sync(desk);
        desk.synced = true;
      }),
    );
    await Promise.all(reviewsRead.map((r) => r.read));
    this.sweepTimer = setInterval(() => void this.sweep(), config.expirySweepMs);
    this.sweepTimer.unref();
  }

  /**
   * Follows `<p>.review`, decoding each record in order (the registry is asked
   * once per schema id). `read` resolves once the topic has been read to the
   * end it had at start: `<p>.review` is written in transactions, so its end offset
   * sits one past a commit marker that is never delivered; a partition counts
   * as read when its last record before that marker has been. A partition
   * that ends in an aborted transaction never does: after REVIEWS_READ_TIMEOUT_MS
   * the service serves what it has read, and says so.
   */
  private async followReviews(desk: Desk, catalog: SchemaCatalog): Promise<{ read: Promise<void> }> {
    const name = desk.pipeline.name;
    const topic = topicName(name, 'review');
    const admin = await openAdmin(this.config.connections.kafkaBrokers, `sluice-review-${this.config.instanceId}`);
    let ends: Map<number, bigint>;
    try {
      ends = new Map((await admin.partitionWatermarks(topic)).filter((p) => BigInt(p.high) > BigInt(p.low)).map((p) => [p.partition, BigInt(p.high)]));
    } finally {
      await admin.close();
    }
    let markRead: () => void = () => {};
    const read = new Promise<void>((resolve) => {
      markRead = () => {
        desk.reviewsRead = true;
        resolve();
      };
    });
    if (ends.size === 0) markRead();
    const timer = setTimeout(() => {
      if (desk.reviewsRead) return;
      this.logger.warn({ pipeline: name, partitions: [...ends.keys()] }, `${topic} not read to its end within ${REVIEWS_READ_TIMEOUT_MS / 1_000} s (an aborted transaction at its end?); serving what has been read`);
      markRead();
    }, REVIEWS_READ_TIMEOUT_MS);
    timer.unref();
    let chain = Promise.resolve();
    const follower = await followTopic({
      brokers: this.config.connections.kafkaBrokers,
      topic,
      clientId: `sluice-review-items-${this.config.instanceId}`,
      logger: this.logger,
      onMessage: (m) => {
        chain = chain.then(async () => {
          if (m.value !== null) {
            try {
              await catalog.prefetch([m.value]);
              const decoded = catalog.decodeSync(m.value);
              if (decoded.kind === 'decoded') {
                const record = decoded.value as ReviewRecord & Record<string, unknown>;
                // An audit item: an automatic decision the decide stage sampled (kind audit; see docs/review.md).
                const kind = record['kind'] === 'audit' ? 'audit' : 'review';
                // A replay's re-decision of an event under review (processors/replay/plan.ts reviewRecordKind).
                const itemId = record['kind'] === 'superseded' ? desk.queue.applySuperseded(record) : desk.queue.applyReview({ key: m.key, record, kind });
                this.onReviewApplied?.(name, itemId);
              } else {
                this.logger.error({ pipeline: name, offset: m.offset, partition: m.partition, decoded: decoded.kind }, 'review record not decodable; skipped');
              }
            } catch (error) {
              this.logger.error({ err: error, pipeline: name, offset: m.offset }, 'review record could not be read; skipped');
            }
          }
          const end = ends.get(m.partition);
          // The last record before the end, or before a commit marker at the end.
          if (end !== undefined && BigInt(m.offset) + 2n >= end) {
            ends.delete(m.partition);
            if (ends.size === 0 && !desk.reviewsRead) {
              clearTimeout(timer);
              markRead();
            }
          }
        });
      },
    });
    this.followers.push(follower);
    return { read };
  }

  /** Ready: accounts and sessions read, every state topic read to a sync record of this instance. */
  ready(): { ready: boolean; detail: string } {
    const pending = [...this.desks.values()].filter((d) => !d.synced || !d.reviewsRead).map((d) => d.pipeline.name);
    if (!this.accountsReady || !this.sessionsReady) return { ready: false, detail: 'reading accounts and sessions' };
    if (pending.length > 0) return { ready: false, detail: `reading the review requests and state of ${pending.join(', ')}` };
    return { ready: true, detail: 'ok' };
  }

  desk(pipeline: string): Desk {
    const desk = this.desks.get(pipeline);
    if (!desk) throw new ReviewError('PIPELINE_UNKNOWN', `This service does not serve a pipeline named "${pipeline}"; it serves ${[...this.desks.keys()].join(', ')}.`);
    return desk;
  }

  item(pipeline: string, itemId: string): ItemView {
    const item = this.desk(pipeline).queue.item(itemId, this.now());
    if (!item) throw new ReviewError('ITEM_NOT_FOUND', `No review item ${itemId} in ${pipeline}.`);
    return item;
  }

  // ---- accounts and sessions

  async addReviewer(username: string, role: Role, createdBy: string): Promise<{ password: string; record: AccountRecord }> {
    if (!USERNAME_FORMAT.test(username)) throw new ReviewError('INVALID_REQUEST', 'A user name is 2-64 characters: a lower-case letter, then lower-case letters, digits, ".", "_" or "-".');
    if (this.accounts.get(username)) throw new ReviewError('REVIEWER_EXISTS', `A reviewer named ${username} exists already.`);
    const password = newPassword();
    const record: AccountRecord = { username, role, password_hash: await hashPassword(password), created_at: this.now(), created_by: createdBy, must_change_password: true };
    await this.write(this.config.reviewersTopic, username, encodeJson(record));
    this.accounts.apply(username, encodeJson(record));
    return { password, record };
  }

  /** Replaces a reviewer's password (the one-time one, on first sign-in, or any later). */
  async changePassword(username: string, current: string, next: string): Promise<void> {
    const account = this.accounts.get(username);
    if (!account) throw new ReviewError('UNAUTHENTICATED', 'This account no longer exists; ask an admin.');
    if (!(await verifyPassword(current, account.password_hash))) throw new ReviewError('WRONG_PASSWORD', 'The current password is wrong.');
    if (next.length < MIN_PASSWORD_CHARS || next === current) {
      throw new ReviewError('PASSWORD_TOO_WEAK', `Choose a new password of at least ${MIN_PASSWORD_CHARS} characters, other than the current one.`);
    }
    const record: AccountRecord = { ...account, password_hash: await hashPassword(next), must_change_password: false };
    await this.write(this.config.reviewersTopic, username, encodeJson(record));
    this.accounts.apply(username, encodeJson(record));
  }

  async openSession(account: AccountRecord): Promise<{ token: string; session: SessionRecord }> {
    const token = newToken();
    const now = this.now();
    const session: SessionRecord = { username: account.username, role: account.role, csrf_token: newToken(), created_at: now, expires_at: now + this.config.sessionMs };
    const key = sessionKey(token);
    await this.write(this.config.sessionsTopic, key, encodeJson(session));
    this.sessions.apply(key, encodeJson(session));
    return { token, session };
  }

  async closeSession(token: string): Promise<void> {
    const key = sessionKey(token);
    await this.write(this.config.sessionsTopic, key, null);
    this.sessions.apply(key, null);
  }

  // ---- actions on items

  /** Takes (or renews) the lease on an item for `reviewer`; 409 if another reviewer holds it or it is closed. */
  async claim(pipeline: string, itemId: string, reviewer: string): Promise<ItemView> {
    const desk = this.desk(pipeline);
    const item = this.item(pipeline, itemId);
    if (item.status !== 'open') throw closed(item);
    const rid = randomUUID();
    const record: StateRecord = { type: 'claim', item_id: itemId, rid, by: reviewer, at: this.now(), lease_ms: desk.settings.leaseMs };
    const applied = await this.writeAndReadBack(desk, itemId, rid, record);
    if (applied.type === 'claim' && !applied.won) {
      if (applied.status !== 'open') throw closed(this.item(pipeline, itemId));
      throw new ReviewError('CLAIMED_BY_OTHER', `${applied.heldBy} is reviewing this item; it is theirs until their claim runs out or they release it.`);
    }
    return this.item(pipeline, itemId);
  }

  /** Gives up one's own claim. */
  async release(pipeline: string, itemId: string, reviewer: string): Promise<ItemView> {
    const desk = this.desk(pipeline);
    const item = this.item(pipeline, itemId);
    if (item.status !== 'open') throw closed(item);
    if (item.claimed_by !== reviewer) throw new ReviewError('CLAIMED_BY_OTHER', item.claimed_by ? `${item.claimed_by} holds this item, not you.` : 'You do not hold this item.');
    const rid = randomUUID();
    await this.writeAndReadBack(desk, itemId, rid, { type: 'release', item_id: itemId, rid, by: reviewer, at: this.now() });
    return this.item(pipeline, itemId);
  }

  /**
   * Resolves an item with the reviewer's answer: exactly one human decision,
   * whatever the number of attempts, instances or clicks. The reviewer must
   * hold the claim, or the item must be free (the resolve takes it).
   */
  async resolve(pipeline: string, itemId: string, reviewer: string, body: Record<string, unknown>): Promise<ItemView> {
    const desk = this.desk(pipeline);
    const answer = checkAnswer(body, desk.rules);
    const initial = this.item(pipeline, itemId);
    if (initial.status !== 'open') throw closed(initial);
    return this.exclusively(desk, itemId, async () => {
      await this.resolveOnce(desk, itemId, reviewer, answer);
      return this.item(pipeline, itemId);
    });
  }

  /** Expires an overdue item to the pipeline's fallback decision (the SLA sweep). */
  async expire(pipeline: string, itemId: string): Promise<boolean> {
    const desk = this.desk(pipeline);
    return this.exclusively(desk, itemId, async () => {
      try {
        await this.resolveOnce(desk, itemId, null, null);
        this.expiredByPipeline.set(pipeline, (this.expiredByPipeline.get(pipeline) ?? 0) + 1);
        return true;
      } catch (error) {
        if (error instanceof ReviewError && error.status === 409) return false;
        throw error;
      }
    });
  }

  private async exclusively<T>(desk: Desk, itemId: string, work: () => Promise<T>): Promise<T> {
    const key = `${desk.pipeline.name}/${itemId}`;
    const before = this.inFlight.get(key) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(work);
    this.inFlight.set(key, mine);
    try {
      return await mine;
    } finally {
      if (this.inFlight.get(key) === mine) this.inFlight.delete(key);
    }
  }

  /** The fenced, synced, transactional write of one resolution (see the module comment). `answer` null: expiry. */
  private async resolveOnce(desk: Desk, itemId: string, reviewer: string | null, answer: ResolveAnswer | null): Promise<void> {
    const name = desk.pipeline.name;
    const unavailable = (error: unknown) => new ReviewError('KAFKA_UNAVAILABLE', `Cannot open a transaction on Kafka: ${errorMessage(error)}. Try again.`, { cause: error });
    const producer = await openTransactionalProducer({
      brokers: this.config.connections.kafkaBrokers,
      clientId: `sluice-review-${this.config.instanceId}`,
      transactionalId: `sluice.${name}.review.${itemId}`,
      retry: { retries: 5, initialMs: 100, maxMs: 2_000 },
    }).catch((error) => {
      throw unavailable(error);
    });
    const rid = randomUUID();
    try {
      // kafkajs initializes the transactional producer id on the first transaction, not on connect:
      // beginning is what fences every other writer of this item, so it comes before the sync and the check.
      const tx = await producer.begin().catch((error) => {
        throw unavailable(error);
      });
      let applied: { promise: Promise<Applied>; cancel(): void } | undefined;
      try {
        await this.sync(desk);
        const item = this.item(name, itemId);
        if (item.status !== 'open') throw closed(item);
        const now = this.now();
        if (reviewer !== null && item.claimed_by !== null && item.claimed_by !== reviewer) {
          throw new ReviewError('CLAIMED_BY_OTHER', `${item.claimed_by} is reviewing this item; only they can resolve it until their claim runs out.`);
        }
        if (reviewer === null && item.due_at > now) throw new ReviewError('RESOLUTION_IN_PROGRESS', 'Not overdue.');
        const source = desk.queue.source(itemId)!;
        const decided = answer && reviewer ? humanDecision(source, answer, reviewer, now) : expiredDecision(source, desk.settings.fallbackDecision, desk.rules.fields, now);
        // An audit sample's automatic decision stands unless the reviewer changes it; an expired audit writes nothing.
        const writesDecision = source.kind === 'review' || (answer !== null && changesDecision(source, answer));
        const state: StateRecord = {
          type: 'resolved',
          item_id: itemId,
          rid,
          outcome: answer ? 'human' : 'expired',
          by: reviewer ?? 'sla',
          at: now,
          decision: writesDecision ? decided.decision : source.record.decision,
          reason: answer?.reason ?? (source.kind === 'audit' ? 'audit_expired' : 'review_expired'),
          fields: Object.fromEntries(desk.rules.fields.map((f) => [f.name, String(writesDecision ? decided[f.name] : source.record[f.name])])),
          decision_version: writesDecision ? decided.decision_version : source.record.decision_version,
        };
        applied = this.awaitApplied(rid);
        if (writesDecision) await tx.send(topicName(name, 'decided'), [{ key: source.key, value: desk.encodeDecided(decided) }]);
        if (answer && reviewer) await tx.send(topicName(name, 'feedback'), [{ key: source.key, value: desk.encodeFeedback(feedbackRecord(itemId, source, answer, reviewer, now, state.decision_version)) }]);
        await tx.send(stateTopicOf(name), [{ key: itemId, value: encodeJson(state) }]);
        await tx.commit();
      } catch (error) {
        applied?.cancel();
        await tx.abort().catch(() => {});
        if (error instanceof ReviewError) throw error;
        // Fenced by another writer of this item, or Kafka failed: what stands is what the log says now.
        await this.sync(desk).catch(() => {});
        const now = this.item(name, itemId);
        if (now.status !== 'open') throw closed(now);
        throw new ReviewError('RESOLUTION_IN_PROGRESS', `The resolution could not be committed (${errorMessage(error)}); nothing was written. Try again.`, { cause: error });
      }
      const outcome = await applied.promise;
      if (outcome.type === 'resolved' && !outcome.won) {
        // Cannot happen while every writer fences before it checks; if it does, say so loudly.
        this.logger.error({ pipeline: name, item_id: itemId }, 'a second resolution was committed for an item; the first stands in the queue');
      }
    } finally {
      await producer.close().catch(() => {});
    }
  }

  /** Sweeps overdue items of every pipeline to their fallback decision. */
  private async sweep(): Promise<void> {
    if (this.sweeping || this.closed || !this.ready().ready) return;
    this.sweeping = true;
    try {
      for (const desk of this.desks.values()) {
        for (const itemId of desk.queue.overdue(this.now()).slice(0, EXPIRE_PER_SWEEP)) {
          if (this.closed) return;
          await this.expire(desk.pipeline.name, itemId).catch((error) => this.logger.warn({ err: error, pipeline: desk.pipeline.name, item_id: itemId }, 'expiring an overdue item failed; retried next sweep'));
        }
      }
    } finally {
      this.sweeping = false;
    }
  }

  /** Writes a sync record to the pipeline's state topic and waits until this instance has read it back. */
  private async sync(desk: Desk): Promise<void> {
    const token = `${this.config.instanceId}/${randomUUID()}`;
    const applied = this.awaitApplied(token);
    try {
      await this.write(stateTopicOf(desk.pipeline.name), `__sync/${this.config.instanceId}`, encodeJson({ type: 'sync', token } satisfies StateRecord));
    } catch (error) {
      applied.cancel();
      throw error;
    }
    await applied.promise;
  }

  private async writeAndReadBack(desk: Desk, itemId: string, rid: string, record: StateRecord): Promise<Applied> {
    const applied = this.awaitApplied(rid);
    try {
      await this.write(stateTopicOf(desk.pipeline.name), itemId, encodeJson(record));
    } catch (error) {
      applied.cancel();
      throw error;
    }
    return applied.promise;
  }

  private awaitApplied(id: string): { promise: Promise<Applied>; cancel(): void } {
    let cancel = () => {};
    const promise = new Promise<Applied>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(new ReviewError('KAFKA_UNAVAILABLE', `Kafka did not deliver this action back within ${READ_BACK_TIMEOUT_MS / 1_000} s; its outcome is unknown. Reload and check.`));
      }, READ_BACK_TIMEOUT_MS);
      this.waiters.set(id, { resolve, timer });
      cancel = () => {
        clearTimeout(timer);
        this.waiters.delete(id);
      };
    });
    return { promise, cancel };
  }

  private async write(topic: string, key: string, value: Buffer | null): Promise<void> {
    if (!this.producer) throw new ReviewError('NOT_READY', 'The review service is starting.');
    try {
      await this.producer.send(topic, [{ key, value }]);
    } catch (error) {
      throw new ReviewError('KAFKA_UNAVAILABLE', `Kafka refused the write to ${topic}: ${errorMessage(error)}. Try again.`, { cause: error });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await Promise.allSettled([...this.inFlight.values()]);
    for (const follower of this.followers.splice(0)) await follower.stop().catch(() => {});
    await this.producer?.close().catch(() => {});
    for (const [id, waiter] of this.waiters) {
      clearTimeout(waiter.timer);
      this.waiters.delete(id);
    }
  }
}

function closed(item: ItemView): ReviewError {
  if (item.status === 'superseded') {
    return new ReviewError('ALREADY_RESOLVED', `This item was closed by replay ${item.superseded_by?.replay_id ?? ''}, whose decision (${item.superseded_by?.decision}) now stands; it needs no review.`);
  }
  const by = item.resolution?.outcome === 'expired' ? 'expired (its review time ran out)' : `resolved by ${item.resolution?.by}`;
  return new ReviewError('ALREADY_RESOLVED', `This item was already ${by}; its decision stands.`);
}
