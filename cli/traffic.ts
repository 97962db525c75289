/**
 * Generated traffic for a pipeline and what comes out of it: used by the demo
 * and the benchmark. Events come from the project's deterministic generator;
 * each carries its produce time as occurred_at, so end-to-end latency is
 * measured from the moment it was produced to the moment its decision is read
 * (read-committed) by a downstream consumer.
 */
import { Worker } from 'node:worker_threads';
import { openProducer } from '../connectors/kafka/admin.ts';
import { followTopic, type Follower } from '../connectors/kafka/follow.ts';
import type { SchemaCatalog } from '../connectors/registry/registry.ts';
import type { FramedDecode } from '../lib/codec.ts';
import { topicName } from '../lib/contracts.ts';
import type { Logger } from '../lib/log.ts';
import type { TrafficGenerator } from '../lib/pipeline.ts';
import type { DecisionCommon as DecisionRecord } from '../processors/decide/transform.ts';

export interface StreamOptions {
  brokers: string[];
  pipeline: string;
  /** The pipeline's own generator (its plugin's). */
  generator: TrafficGenerator;
  count: number;
  /** Events per second; 0 = as fast as the producer goes. */
  ratePerSec: number;
  /** One malformed event after every `badEvery` valid ones (0 = none). */
  badEvery: number;
  idPrefix: string;
  seed: number;
  maxMessageBytes: number;
  onProgress?(produced: number): void;
}

export interface StreamResult {
  valid: number;
  bad: number;
  /** Dead-letter reasons expected for the bad events, by count. */
  expectedReasons: Record<string, number>;
  startedAt: number;
  endedAt: number;
}

const TICK_MS = 20;

/** Produces `count` valid events (plus malformed ones) at a steady rate, in batched sends. */
export async function produceStream(options: StreamOptions): Promise<StreamResult> {
  const producer = await openProducer(options.brokers, 'sluice-traffic');
  const topic = topicName(options.pipeline, 'raw');
  // Bad events occur now too, so that per-hour analytics count them with the good ones.
  const samples =
    options.badEvery > 0 ? options.generator.malformed({ maxMessageBytes: options.maxMessageBytes, idPrefix: options.idPrefix, occurredAtMs: Date.now() }) : [];
  const expectedReasons: Record<string, number> = {};
  let produced = 0;
  let bad = 0;
  const startedAt = Date.now();
  try {
    while (produced < options.count) {
      const due = options.ratePerSec > 0 ? Math.min(options.count, Math.ceil(((Date.now() - startedAt) / 1000) * options.ratePerSec)) : options.count;
      const size = Math.min(due - produced, 2_000);
      if (size <= 0) {
        await new Promise((resolve) => setTimeout(resolve, TICK_MS));
        continue;
      }
      const now = Date.now();
      const messages = [];
      for (const event of options.generator.events({ seed: options.seed, count: size, firstIndex: produced, startMs: now, spacingMs: 0, idPrefix: options.idPrefix })) {
        messages.push({ key: event.key, value: event.value });
        produced++;
        if (options.badEvery > 0 && produced % options.badEvery === 0) {
          const sample = samples[bad % samples.length]!;
          // Each bad event gets a key of its own, so repeated classes stay countable.
          messages.push({ key: `${sample.key}-${bad}`, value: sample.value });
          expectedReasons[sample.reason] = (expectedReasons[sample.reason] ?? 0) + 1;
          bad++;
        }
      }
      await producer.send(topic, messages);
      options.onProgress?.(produced);
    }
  } finally {
    await producer.close();
  }
  return { valid: produced, bad, expectedReasons, startedAt, endedAt: Date.now() };
}

/** What the worker of `produceStreamOffThread` posts: progress after each send, then the result. */
export type OffThreadMessage = { produced: number } | { result: StreamResult };

/**
 * `produceStream` on a worker thread, with the generator of `options.pipeline`
 * (a pipeline or instance name). Generating and encoding a send's events keeps
 * an event loop busy for milliseconds at a time; where the same process reads
 * the decisions and timestamps them (the benchmark, the demo), those stalls
 * would be counted as the pipeline's latency. On a thread of its own the
 * producer is what it is in production: another program.
 */
export function produceStreamOffThread(options: Omit<StreamOptions, 'generator'>): Promise<StreamResult> {
  const { onProgress, ...data } = options;
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./traffic-worker.ts', import.meta.url), { workerData: data });
    let result: StreamResult | undefined;
    worker.on('message', (message: OffThreadMessage) => {
      if ('result' in message) result = message.result;
      else onProgress?.(message.produced);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (result) resolve(result);
      else reject(new Error(`the traffic producer's worker thread exited (code ${code}) before it reported a result`));
    });
  });
}

/**
 * Reads a pipeline's decided and dead-letter topics, keeping only this run's
 * events. It keeps no decision, only what is reported of them: the process
 * that reads them also timestamps them, and a decision kept is an object every
 * scavenge copies (V8's young collection costs what survives it). Keeping each
 * decided record, the benchmark's reader grew to 356 MiB in a run and its
 * scavenges paused 34 ms at p90, up to 114: time counted as the pipeline's
 * latency for the decisions read after them (docs/performance.md).
 */
export class Outcomes {
  /** The event ids decided, in the order read. */
  readonly decided = new Set<string>();
  /** Decisions seen more than once for an event: must stay 0. */
  duplicates = 0;
  /** Read time minus occurred_at of each decision, in the order of `decided`. */
  readonly latenciesMs: number[] = [];
  /** occurred_at of each decision, in the order of `decided`. */
  readonly occurredAtMs: number[] = [];
  /** Decisions by their `decision`, and by their `decided_by`. */
  readonly byDecision = new Map<string, number>();
  readonly byDecidedBy = new Map<string, number>();
  /** The first model version a decision carried, and the first decision's policy version. */
  modelVersion: string | null = null;
  policyVersion: string | null = null;
  readonly deadLetters = new Map<string, number>();
  lastDecisionAt = 0;
  private readonly followers: Follower[] = [];

  static async follow(options: { brokers: string[]; pipeline: string; catalog: SchemaCatalog; idPrefix: string; logger: Logger }): Promise<Outcomes> {
    const outcomes = new Outcomes();
    const { catalog, idPrefix } = options;
    const record = (decoded: FramedDecode, receivedAt: number) => {
      if (decoded.kind !== 'decoded') return;
      const decision = decoded.value as DecisionRecord;
      if (!decision.event_id.startsWith(idPrefix)) return;
      if (outcomes.decided.has(decision.event_id)) {
        outcomes.duplicates++;
        return;
      }
      outcomes.decided.add(decision.event_id);
      outcomes.latenciesMs.push(receivedAt - decision.occurred_at);
      outcomes.occurredAtMs.push(decision.occurred_at);
      increment(outcomes.byDecision, decision.decision);
      increment(outcomes.byDecidedBy, decision.decided_by);
      outcomes.modelVersion ??= decision.model_version || null;
      outcomes.policyVersion ??= decision.policy_version;
      outcomes.lastDecisionAt = receivedAt;
    };
    let resolving = Promise.resolve();
    outcomes.followers.push(
      await followTopic({
        brokers: options.brokers,
        topic: topicName(options.pipeline, 'decided'),
        clientId: 'sluice-outcomes-decided',
        logger: options.logger,
        onMessage: ({ value }) => {
          const receivedAt = Date.now();
          if (!value) return;
          const decoded = catalog.decodeSync(value);
          if (decoded.kind !== 'unknown-schema') return record(decoded, receivedAt);
          // A schema id not resolved yet (the first decisions): resolved once, then decoded.
          resolving = resolving
            .then(async () => {
              await catalog.prefetch([value]);
              record(catalog.decodeSync(value), receivedAt);
            })
            .catch((error) => options.logger.warn({ err: error, schemaId: decoded.schemaId }, 'a decision whose schema could not be read; not counted'));
        },
      }),
      await followTopic({
        brokers: options.brokers,
        topic: topicName(options.pipeline, 'dlq'),
        clientId: 'sluice-outcomes-dlq',
        logger: options.logger,
        onMessage: ({ key, headers }) => {
          if (!key?.startsWith(idPrefix)) return;
          const reason = headers['dlq.reason'] ?? 'UNKNOWN';
          increment(outcomes.deadLetters, reason);
        },
      }),
    );
    return outcomes;
  }

  deadLetterCount(): number {
    return [...this.deadLetters.values()].reduce((a, b) => a + b, 0);
  }

  async stop(): Promise<void> {
    await Promise.all(this.followers.map((f) => f.stop()));
  }
}

function increment(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
