/**
 * Replay, wired to the broker: plans a window and re-decides it, exactly once
 * per run, while the live pipeline keeps running.
 *
 * How a run is exactly once and resumable:
 * - Its window (input offsets per partition) is resolved once and recorded on
 *   the control topic (`<p>/replay.<id>`), with its run number; the same
 *   command finds it again.
 * - Its progress is a consumer group of its own, `sluice.<p>.replay.<run>`,
 *   seeded at the window's start. Each chunk's re-decisions and the group's
 *   new position are committed in one Kafka transaction, by one transactional
 *   producer per input partition (id `<group>.<partition>`), so partitions
 *   commit side by side: a run killed at any point has either written a chunk
 *   and moved past it, or neither. The next run's producers fence the dead
 *   one's (aborting what it left open) before the group is read.
 * - Live stages are untouched: their groups, transactional ids and offsets are
 *   their own, so traffic keeps flowing and being decided during a replay.
 *
 * What a run computes is the live pipeline's own code: the validate and score
 * stage definitions (processors/runtime/stage.ts's core, with the champion the
 * control topic names, swapped while running) and the decide transform with a
 * replay context. Each re-decision gets a version above every decision of the
 * event on `<p>.decided` (read from the window's start to its current end
 * before the run begins) and names the run in `replay_id`; an event a human
 * decided is skipped.
 */
import { randomUUID } from 'node:crypto';
import {
  committedOffsets,
  deleteGroups,
  offsetsForTimestamp,
  openAdmin,
  readWindow,
  type WindowBatch,
} from '../../connectors/kafka/admin.ts';
import { openTransactionalProducer, type TransactionalProducer } from '../../connectors/kafka/tx.ts';
import { modelStoreOf } from '../../connectors/models/config.ts';
import { SchemaCatalog } from '../../connectors/registry/registry.ts';
import type { PlainMessage } from '../../connectors/kafka/admin.ts';
import { type SourceRecord, topicName, type ValidatedRecord } from '../../lib/contracts.ts';
import { SluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { createStageMetrics } from '../../lib/metrics.ts';
import type { PipelineInstance, Policy } from '../../lib/pipeline.ts';
import { type Connections, integerVar, parseEnvSchemas } from '../../lib/settings.ts';
import { z } from 'zod';
import { auditPosition, auditRateOf } from '../decide/audit.ts';
import { decideStage } from '../decide/runner.ts';
import { decide } from '../decide/transform.ts';
import { type ControlState, followControl, readControl, writeControl } from '../runtime/control.ts';
import { processIsolating, type StageDefinition, type StageInput } from '../runtime/stage.ts';
import { scoreStage } from '../score/runner.ts';
import type { ShadowedScoredRecord } from '../score/transform.ts';
import { validateStage } from '../validate/runner.ts';
import {
  DecisionIndex,
  emptySummary,
  humanDecidedIn,
  inputOf,
  parseReplayState,
  type ReplayPlan,
  type ReplayRange,
  type ReplayRequest,
  type ReplayState,
  type ReplaySummary,
  replayGroupId,
  replayId,
  replaySetting,
  reviewRecordKind,
  runName,
} from './plan.ts';

export const REPLAY_DEFAULTS = {
  /** Records per transaction (SLUICE_REPLAY_CHUNK_RECORDS): a chunk's re-decisions stay far below the broker's 1 MiB batch limit. */
  chunkRecords: 1_000,
} as const;

const replaySchema = z.object({ SLUICE_REPLAY_CHUNK_RECORDS: integerVar(1, 10_000).default(REPLAY_DEFAULTS.chunkRecords) });
/**
 * Decisions of the window's events are read from this long before its start:
 * an event's decision is written after its input record, but clocks of
 * different machines may disagree by a little.
 */
const CLOCK_SKEW_MARGIN_MS = 10 * 60_000;

export interface ReplayContext {
  pipeline: PipelineInstance;
  connections: Connections;
  /** The environment stage settings are read from (policy thresholds, model store, validate limits). */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Who runs it, for the control record. */
  by: string;
  now(): number;
}

export interface ReplayProgress {
  /** Input offsets covered so far (transaction markers included), against the window's total. */
  covered: bigint;
  total: bigint;
  replayed: number;
}

/** The stage settings a replay needs, parsed at once (one CONFIG_INVALID lists every bad variable). */
function stageSettings(pipeline: PipelineInstance, env: NodeJS.ProcessEnv) {
  const plugin = pipeline.plugin;
  return parseEnvSchemas({ ...validateStage.settings(plugin), ...scoreStage.settings(plugin), ...decideStage.settings(plugin), replay: replaySchema }, env);
}

async function championOf(ctx: ReplayContext, control: ControlState, settings: ReturnType<typeof stageSettings>): Promise<string> {
  const named = control.modelAlias(ctx.pipeline.name, 'champion');
  if (named !== null) return named;
  const fallback = settings.score.SLUICE_MODEL_VERSION ?? (await modelStoreOf(settings.store).defaultVersion(ctx.pipeline.plugin.kind));
  return fallback ?? 'none';
}

/** The input window per partition, from the request's times. */
async function resolveRanges(ctx: ReplayContext, topic: string, fromMs: number, toMs: number): Promise<ReplayRange[]> {
  const brokers = ctx.connections.kafkaBrokers;
  const [starts, ends] = await Promise.all([offsetsForTimestamp(brokers, topic, fromMs), offsetsForTimestamp(brokers, topic, toMs)]);
  return starts.map(({ partition, offset }) => {
    const end = ends.find((e) => e.partition === partition)?.offset ?? offset;
    return { partition, start: offset, end: BigInt(end) > BigInt(offset) ? end : offset };
  });
}

/** Reads a window with a throw-away group, handing each batch to `handle`. */
async function scanWindow(ctx: ReplayContext, topic: string, ranges: ReadonlyArray<ReplayRange>, handle: (batch: WindowBatch) => Promise<void> | void): Promise<void> {
  const brokers = ctx.connections.kafkaBrokers;
  const groupId = `sluice.${ctx.pipeline.name}.replay-scan.${randomUUID()}`;
  const open = ranges.filter((r) => BigInt(r.end) > BigInt(r.start));
  if (open.length === 0) return;
  const reader = await readWindow({
    brokers,
    clientId: groupId,
    groupId,
    topic,
    ends: new Map(open.map((r) => [r.partition, BigInt(r.end)])),
    starts: new Map(open.map((r) => [r.partition, BigInt(r.start)])),
    handle: async (batch) => {
      await handle(batch);
    },
  });
  try {
    await reader.done;
  } finally {
    await reader.stop();
    await deleteGroups(brokers, [groupId]);
  }
}

/**
 * Every decision on `<p>.decided` from `fromMs` (less the clock-skew margin)
 * to its end: the versions a re-decision must exceed, what stands, and which
 * events a human decided.
 */
async function readDecisionIndex(ctx: ReplayContext, catalog: SchemaCatalog, fromMs: number, clientId: string): Promise<DecisionIndex> {
  const brokers = ctx.connections.kafkaBrokers;
  const index = new DecisionIndex();
  const decided = topicName(ctx.pipeline.name, 'decided');
  const admin = await openAdmin(brokers, clientId);
  const marks = await admin.partitionWatermarks(decided).finally(() => admin.close());
  const from = await offsetsForTimestamp(brokers, decided, fromMs - CLOCK_SKEW_MARGIN_MS);
  const ranges = from.map(({ partition, offset }) => ({ partition, start: offset, end: marks.find((m) => m.partition === partition)?.high ?? offset }));
  await scanWindow(ctx, decided, ranges, async (batch) => {
    await catalog.prefetch(batch.records.map((r) => r.value));
    for (const record of batch.records) {
      if (record.value === null) continue;
      const decoded = catalog.decodeSync(record.value);
      if (decoded.kind === 'decoded') index.observe(decoded.value as Parameters<DecisionIndex['observe']>[0]);
    }
  });
  return index;
}

/** The event id of a window's input record: a registry-framed record (validated, or Avro on raw) or a JSON envelope; null when unreadable. */
function eventIdOf(value: Buffer | null, catalog: SchemaCatalog): string | null {
  if (value === null || value.length === 0) return null;
  let object: unknown;
  if (value[0] === 0 && value.length >= 5) {
    const decoded = catalog.decodeSync(value);
    object = decoded.kind === 'decoded' ? decoded.value : undefined;
  } else {
    try {
      object = JSON.parse(value.toString('utf8'));
    } catch {
      return null;
    }
  }
  const id = object !== null && typeof object === 'object' ? (object as { event_id?: unknown }).event_id : undefined;
  return typeof id === 'string' && id.length > 0 ? id : null;
}

const at0 = (positions: ReadonlyMap<number, bigint>, partition: number) => positions.get(partition) ?? -1n;

/** The replay's current record on the control topic, if any. */
function stateOf(control: ControlState, pipeline: string, id: string): ReplayState | null {
  const setting = control.get(pipeline, replaySetting(id));
  return setting ? parseReplayState(setting.value) : null;
}

async function recordState(ctx: ReplayContext, catalog: SchemaCatalog, state: ReplayState, reason: string): Promise<void> {
  await writeControl({
    brokers: ctx.connections.kafkaBrokers,
    catalog,
    setting: { pipeline: ctx.pipeline.name, setting: replaySetting(state.id), value: JSON.stringify(state), reason, updated_by: ctx.by },
  });
}

/** Per partition, how far the run's group has come ('-1': not started). */
async function positions(ctx: ReplayContext, state: ReplayState): Promise<Map<number, bigint>> {
  const committed = await committedOffsets(ctx.connections.kafkaBrokers, replayGroupId(ctx.pipeline.name, state), [state.topic]);
  return new Map(committed.map((c) => [c.partition, BigInt(c.offset)]));
}

/** What the command would do, changing nothing: the window, its size, and the versions it would decide with. */
export async function planReplay(ctx: ReplayContext, request: ReplayRequest, options: { force: boolean }): Promise<ReplayPlan> {
  const settings = stageSettings(ctx.pipeline, ctx.env);
  const policy = ctx.pipeline.plugin.policy.load(settings.policy) as Policy<unknown>;
  const catalog = new SchemaCatalog(ctx.connections.schemaRegistryUrl);
  const control = await readControl({ brokers: ctx.connections.kafkaBrokers, catalog, clientId: `${ctx.pipeline.name}.replay-plan`, logger: ctx.logger });
  const id = replayId(request);
  const existing = stateOf(control, ctx.pipeline.name, id);
  const topic = topicName(ctx.pipeline.name, inputOf(request.fromStage));
  let action: ReplayPlan['action'] = 'start';
  let ranges: ReplayRange[];
  let toMs = request.toMs ?? ctx.now();
  let name = `${id}-1`;
  let done = new Map<number, bigint>();
  if (existing !== null && (existing.status === 'running' || !options.force)) {
    action = existing.status === 'running' ? 'resume' : 'nothing-to-do';
    ranges = existing.ranges;
    toMs = existing.to_ms;
    name = runName(existing);
    if (existing.status === 'running') done = await positions(ctx, existing);
  } else {
    if (existing !== null) {
      action = 'start-again';
      name = runName({ id, run: existing.run + 1 });
    }
    ranges = await resolveRanges(ctx, topic, request.fromMs, toMs);
  }
  const events = new Map<number, number>();
  const windowIds = new Set<string>();
  await scanWindow(ctx, topic, ranges, async (batch) => {
    events.set(batch.partition, (events.get(batch.partition) ?? 0) + batch.records.length);
    await catalog.prefetch(batch.records.map((r) => r.value));
    for (const record of batch.records) {
      const id = eventIdOf(record.value, catalog);
      if (id !== null) windowIds.add(id);
    }
  });
  // What a run would skip: events of the window a reviewer decided (a replay never overrides them).
  const humanDecided = windowIds.size === 0 ? 0 : humanDecidedIn(await readDecisionIndex(ctx, catalog, request.fromMs, `${ctx.pipeline.name}.replay-plan`), windowIds);
  return {
    replay: name,
    action,
    topic,
    fromMs: request.fromMs,
    toMs,
    ranges: ranges.map((r) => {
      const at = done.get(r.partition);
      return { ...r, events: events.get(r.partition) ?? 0, ...(at !== undefined && at >= 0n ? { done: `replayed up to ${at}` } : {}) };
    }),
    modelVersion: await championOf(ctx, control, settings),
    challengerVersion: control.modelAlias(ctx.pipeline.name, 'challenger'),
    killSwitchOn: control.killSwitchOn(ctx.pipeline.name),
    policyVersion: policy.version,
    humanDecided,
  };
}

export interface ReplayResult {
  /** null: the replay had already finished, and --force was not given. */
  summary: ReplaySummary | null;
  state: ReplayState;
}

/**
 * Runs (or resumes) a replay to the end of its window. Throws on a failure
 * that stops it; running the same command again resumes where it stopped.
 */
export async function executeReplay(ctx: ReplayContext, request: ReplayRequest, options: { force: boolean; onProgress?(progress: ReplayProgress): void; onStart?(state: ReplayState): void }): Promise<ReplayResult> {
  const { pipeline, logger } = ctx;
  const brokers = ctx.connections.kafkaBrokers;
  const settings = stageSettings(pipeline, ctx.env);
  const policy = pipeline.plugin.policy.load(settings.policy) as Policy<unknown>;
  const catalog = new SchemaCatalog(ctx.connections.schemaRegistryUrl);
  const began = performance.now();
  const step = (what: string, fields: Record<string, unknown> = {}) => logger.info({ ...fields, elapsed_ms: Math.round(performance.now() - began) }, what);
  const closers: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const closer of closers.reverse()) await closer().catch((error: unknown) => logger.warn({ err: error }, 'closing a replay resource failed'));
  };
  try {
    // Followed for the whole run: the champion (and the kill switch) apply as they change, as in the live stages.
    const { state: control, follower } = await followControl({ brokers, catalog, clientId: `${pipeline.name}.replay`, logger });
    closers.push(() => follower.stop());

    const id = replayId(request);
    const existing = stateOf(control, pipeline.name, id);
    if (existing?.status === 'finished' && !options.force) return { summary: null, state: existing };
    const resumed = existing?.status === 'running';
    let state: ReplayState;
    if (existing !== null && resumed) {
      state = existing;
    } else {
      const topic = topicName(pipeline.name, inputOf(request.fromStage));
      const toMs = request.toMs ?? ctx.now();
      state = {
        id,
        run: (existing?.run ?? 0) + 1,
        status: 'running',
        from_stage: request.fromStage,
        from_ms: request.fromMs,
        to_ms: toMs,
        to_given: request.toMs !== null,
        topic,
        ranges: await resolveRanges(ctx, topic, request.fromMs, toMs),
        started_at: ctx.now(),
        finished_at: null,
        summary: null,
      };
      await recordState(ctx, catalog, state, `sluice replay --from-datetime ${new Date(state.from_ms).toISOString()}`);
    }
    step(resumed ? 'replay resumed' : 'replay started', { replay: runName(state), ranges: state.ranges });
    options.onStart?.(state);
    const run = runName(state);
    const groupId = replayGroupId(pipeline.name, state);
    const summary = emptySummary(run, resumed);

    // The fence first: a run killed earlier may have left a transaction open; this aborts it.
    const producers = new Map<number, TransactionalProducer>();
    await Promise.all(
      state.ranges.map(async ({ partition }) => {
        const producer = await openTransactionalProducer({ brokers, clientId: groupId, transactionalId: `${groupId}.${partition}` });
        producers.set(partition, producer);
        closers.push(() => producer.close());
      }),
    );
    // A new run's group starts at the window's start: recorded in a transaction of offsets only (fast; no group join).
    const before = await positions(ctx, state);
    const unseeded = state.ranges.filter((r) => at0(before, r.partition) < 0n);
    for (const range of unseeded) {
      const transaction = await producers.get(range.partition)!.begin();
      await transaction.sendOffsets(groupId, [{ topic: state.topic, partition: range.partition, offset: range.start }]);
      await transaction.commit();
    }
    const at = await positions(ctx, state);
    step('fenced; positions read', { positions: Object.fromEntries([...at].map(([p, o]) => [p, o.toString()])) });
    const ends = new Map(state.ranges.map((r) => [r.partition, BigInt(r.end)]));
    const finished = new Set(state.ranges.filter((r) => (at.get(r.partition) ?? BigInt(r.start)) >= BigInt(r.end)).map((r) => r.partition));
    const covered = new Map(state.ranges.map((r) => [r.partition, (at.get(r.partition) ?? BigInt(r.start)) - BigInt(r.start)]));
    const total = state.ranges.reduce((n, r) => n + BigInt(r.end) - BigInt(r.start), 0n);
    const progress = () => options.onProgress?.({ covered: [...covered.values()].reduce((n, c) => n + c, 0n), total, replayed: summary.replayed });

    // Every decision of the window's events so far: the versions to exceed, and who decided.
    let index = new DecisionIndex();
    if (finished.size < state.ranges.length) {
      index = await readDecisionIndex(ctx, catalog, state.from_ms, `${groupId}.index`);
      step('decisions of the window read', { events: index.size });
    }

    const metrics = createStageMetrics({ pipeline: pipeline.name, stage: 'replay', team: pipeline.owners.team });
    const services = { pipeline, catalog, control, logger, metrics, now: ctx.now };
    const validate: StageDefinition<Buffer> | null = state.from_stage === 'validate' ? await validateStage.factory(settings)(services) : null;
    const score: StageDefinition<ValidatedRecord> = await scoreStage.factory(settings)(services);
    if (score.close) closers.push(() => score.close!());
    const encodeDecided = await catalog.encoderFor(`${topicName(pipeline.name, 'decided')}-value`);
    const encodeReview = await catalog.encoderFor(`${topicName(pipeline.name, 'review')}-value`);
    const reviewDecision = pipeline.plugin.reviewDecision;
    const auditRate = auditRateOf(pipeline.plugin);
    step('stages built', { models: control.modelAlias(pipeline.name, 'champion') });
    let firstBatch = true;

    /** One chunk: its re-decisions and review records, as messages. */
    const redecide = async (records: SourceRecord[]): Promise<{ decided: PlainMessage[]; review: PlainMessage[] }> => {
      summary.read += records.length;
      const decided: PlainMessage[] = [];
      const review: PlainMessage[] = [];
      const validated: Array<StageInput<ValidatedRecord>> = [];
      if (validate) {
        const outcomes = await processIsolating(validate, records.map((source) => ({ source, value: source.value as Buffer })), logger);
        outcomes.forEach((outcome, i) => {
          const value = outcome.kind === 'emit' ? outcome.outputs.find((o) => o.to === 'validated')?.value : undefined;
          if (value === undefined) summary.failed++;
          else validated.push({ source: records[i]!, value: value as ValidatedRecord });
        });
      } else {
        await catalog.prefetch(records.map((r) => r.value));
        for (const source of records) {
          const decoded = source.value === null ? null : catalog.decodeSync(source.value);
          if (decoded?.kind === 'decoded') validated.push({ source, value: decoded.value as ValidatedRecord });
          else summary.failed++;
        }
      }
      const scored = validated.length > 0 ? await processIsolating(score, validated, logger) : [];
      const killSwitchOn = control.killSwitchOn(pipeline.name);
      scored.forEach((outcome, i) => {
        const source = validated[i]!.source;
        const value = outcome.kind === 'emit' ? (outcome.outputs.find((o) => o.to === 'scored')?.value as ShadowedScoredRecord | undefined) : undefined;
        if (value === undefined) {
          summary.failed++;
          return;
        }
        const known = index.get(value.event_id);
        if (known?.human) {
          summary.skipped_human++;
          return;
        }
        const version = DecisionIndex.nextVersion(known);
        const result = decide(value, { pipeline: pipeline.name, policy, reviewDecision, killSwitchOn, now: ctx.now, replay: { id: run, decisionVersion: () => version } });
        const decision = result.kind === 'emit' ? result.outputs.find((o) => o.to === 'decided')?.value : undefined;
        if (decision === undefined) {
          summary.failed++;
          return;
        }
        decided.push({ key: source.key, value: encodeDecided(decision) });
        if (known === undefined) summary.new++;
        else if (known.decision !== decision.decision) summary.changed[`${known.decision}→${decision.decision}`] = (summary.changed[`${known.decision}→${decision.decision}`] ?? 0) + 1;
        else summary.unchanged++;
        // The review queue follows the re-decision (plan.ts reviewRecordKind): a review item, or the open one closed as superseded.
        const kind = reviewRecordKind({ known, decision: decision.decision, reviewDecision, audited: auditRate > 0 && auditPosition(decision.event_id) < auditRate });
        if (kind !== null) review.push({ key: source.key, value: encodeReview({ ...decision, payload: value.payload, kind }) });
        // At once, not after the commit: an event twice in the window gets two distinct versions.
        index.observe({ event_id: decision.event_id, decision_version: version, decision: decision.decision, decided_by: decision.decided_by });
      });
      return { decided, review };
    };

    const reader = await readWindow({
      brokers,
      clientId: groupId,
      groupId,
      topic: state.topic,
      ends,
      finished,
      // A run killed without leaving the group holds its partitions this long: the rerun waits for it.
      sessionTimeoutMs: 6_000,
      // Each partition has its own producer: their transactions' round trips overlap.
      concurrency: state.ranges.length,
      logger,
      handle: async (batch, heartbeat) => {
        if (firstBatch) step('first batch');
        firstBatch = false;
        const chunks: SourceRecord[][] = [];
        const size = settings.replay.SLUICE_REPLAY_CHUNK_RECORDS;
        for (let i = 0; i < batch.records.length; i += size) chunks.push(batch.records.slice(i, i + size));
        if (chunks.length === 0) chunks.push([]);
        const compute = (chunk: SourceRecord[]) => (chunk.length > 0 ? redecide(chunk) : Promise.resolve({ decided: [], review: [] }));
        // The next chunk is computed while this one's transaction commits (CPU beside broker round trips); in order, so versions stay in order.
        let computing = compute(chunks[0]!);
        for (const [i, chunk] of chunks.entries()) {
          const next = i === chunks.length - 1 ? batch.next : (BigInt(chunk.at(-1)!.offset) + 1n).toString();
          const waited = performance.now();
          const { decided, review } = await computing;
          const computed = performance.now();
          if (i + 1 < chunks.length) {
            computing = compute(chunks[i + 1]!);
            computing.catch(() => {}); // awaited next round; a failed commit before then must not leave it unhandled
          }
          const transaction = await producers.get(batch.partition)!.begin();
          try {
            if (decided.length > 0) await transaction.send(topicName(pipeline.name, 'decided'), decided);
            if (review.length > 0) await transaction.send(topicName(pipeline.name, 'review'), review);
            await transaction.sendOffsets(groupId, [{ topic: state.topic, partition: batch.partition, offset: next }]);
            await transaction.commit();
          } catch (error) {
            await transaction.abort().catch(() => {});
            throw new SluiceError('KAFKA_TRANSACTION_FAILED', `Replay ${run} could not commit a chunk of partition ${batch.partition}: ${(error as Error).message}. Nothing of it was written; run the same command again to resume.`, { cause: error });
          }
          logger.debug({ partition: batch.partition, records: chunk.length, wait_ms: Math.round(computed - waited), commit_ms: Math.round(performance.now() - computed) }, 'chunk committed');
          summary.replayed += decided.length;
          const range = state.ranges.find((r) => r.partition === batch.partition)!;
          covered.set(batch.partition, BigInt(next) - BigInt(range.start));
          progress();
          await heartbeat();
        }
      },
    });
    closers.push(() => reader.stop());
    progress();
    await reader.done;
    step('window replayed', { replayed: summary.replayed });
    for (const range of state.ranges) covered.set(range.partition, BigInt(range.end) - BigInt(range.start));
    progress();
    const done: ReplayState = { ...state, status: 'finished', finished_at: ctx.now(), summary };
    await recordState(ctx, catalog, done, `replay ${run} finished`);
    return { summary, state: done };
  } finally {
    await close();
  }
}
