/**
 * The processor runtime, written once and used by every stage: it turns a
 * stage definition (decoded records in, outcomes out) into an exactly-once
 * Kafka processor with dead letters, metrics, health endpoints, the control
 * plane and graceful shutdown.
 */
import { z } from 'zod';
import { type ChunkResult, type OutgoingMessage, startExactlyOnce } from '../../connectors/kafka/exactly-once.ts';
import { type AvroType, framedEncoder, SchemaCatalog } from '../../connectors/registry/registry.ts';
import { errorMessage, isSluiceError } from '../../lib/errors.ts';
import { keepRunning, Resources, type Running } from '../../lib/lifecycle.ts';
import { createLogger, type Logger } from '../../lib/log.ts';
import { createStageMetrics, type StageMetrics, startMetricsServer } from '../../lib/metrics.ts';
import { type Connections, parseEnv } from '../../lib/settings.ts';
import type { PipelineDefinition } from '../../pipelines/registry.ts';
import { type ControlState, followControl } from './control.ts';
import { type DeadLetter, deadLetter, type Outcome, type SourceRecord, type TopicSuffix, topicName } from './types.ts';

export type StageName = 'validate' | 'score' | 'decide';

export const RUNTIME_DEFAULTS = {
  /** Records per transaction: bounds the slow tail of a batch well inside the transaction timeout. */
  maxBatchRecords: 500,
  transactionTimeoutMs: 60_000,
  /** How long an idle fetch waits; data is returned as soon as it arrives. */
  fetchMaxWaitMs: 100,
  /** A crashed instance's partitions move after this long. */
  sessionTimeoutMs: 10_000,
  metricsPorts: { validate: 9464, score: 9465, decide: 9466 } as Record<StageName, number>,
} as const;

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const runtimeSchema = z.object({
  SLUICE_MAX_BATCH_RECORDS: integer(1, 10_000).optional(),
  SLUICE_TRANSACTION_TIMEOUT_MS: integer(1_000, 900_000).optional(),
  SLUICE_FETCH_MAX_WAIT_MS: integer(1, 10_000).optional(),
  SLUICE_SESSION_TIMEOUT_MS: integer(6_000, 300_000).optional(),
  /** 0 turns the HTTP endpoints off. */
  SLUICE_METRICS_PORT: integer(0, 65_535).optional(),
});

export interface RuntimeConfig {
  maxBatchRecords: number;
  transactionTimeoutMs: number;
  fetchMaxWaitMs: number;
  sessionTimeoutMs: number;
  metricsPort: number;
}

export function runtimeConfigFromEnv(stage: StageName, env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  const parsed = parseEnv(runtimeSchema, env);
  return {
    maxBatchRecords: parsed.SLUICE_MAX_BATCH_RECORDS ?? RUNTIME_DEFAULTS.maxBatchRecords,
    transactionTimeoutMs: parsed.SLUICE_TRANSACTION_TIMEOUT_MS ?? RUNTIME_DEFAULTS.transactionTimeoutMs,
    fetchMaxWaitMs: parsed.SLUICE_FETCH_MAX_WAIT_MS ?? RUNTIME_DEFAULTS.fetchMaxWaitMs,
    sessionTimeoutMs: parsed.SLUICE_SESSION_TIMEOUT_MS ?? RUNTIME_DEFAULTS.sessionTimeoutMs,
    metricsPort: parsed.SLUICE_METRICS_PORT ?? RUNTIME_DEFAULTS.metricsPorts[stage],
  };
}

/** A record handed to a stage: its source and, for Avro input topics, the decoded value. */
export interface StageInput<In> {
  source: SourceRecord;
  value: In;
}

/** What the runtime gives a stage when it is built. */
export interface StageServices {
  pipeline: PipelineDefinition;
  catalog: SchemaCatalog;
  control: ControlState;
  logger: Logger;
  metrics: StageMetrics;
  now(): number;
}

/**
 * A stage: which topic it reads, in which format, where it may write, and how
 * a batch of inputs becomes outcomes (one per input, same order). Only data
 * errors become dead letters; anything thrown is treated as transient and the
 * whole chunk is retried.
 */
export interface StageDefinition<In = unknown> {
  input: TopicSuffix;
  /** `bytes`: the raw value as consumed; `avro`: decoded with the registry (bad framing is dead-lettered). */
  inputFormat: 'bytes' | 'avro';
  outputs: readonly TopicSuffix[];
  process(inputs: Array<StageInput<In>>): Promise<Outcome[]> | Outcome[];
  close?(): Promise<void>;
}

export type StageFactory<In> = (services: StageServices) => Promise<StageDefinition<In>>;

function dlqHeaders(stage: string, source: SourceRecord, letter: DeadLetter, now: number): Record<string, string> {
  return {
    'dlq.reason': letter.reason,
    'dlq.message': letter.message,
    'dlq.stage': stage,
    'dlq.source.topic': source.topic,
    'dlq.source.partition': String(source.partition),
    'dlq.source.offset': source.offset,
    'dlq.failed_at': String(now),
  };
}

/** Turns outcomes into the transaction's messages; an output that fails its schema is dead-lettered. */
export function outgoingMessages(args: {
  pipeline: string;
  stage: StageName;
  outcomes: Array<{ source: SourceRecord; outcome: Outcome }>;
  encoders: ReadonlyMap<TopicSuffix, (value: unknown) => Buffer>;
  now: number;
  logger: Logger;
}): OutgoingMessage[] {
  const messages: OutgoingMessage[] = [];
  const dlqTopic = topicName(args.pipeline, 'dlq');
  const toDlq = (source: SourceRecord, letter: DeadLetter) => {
    args.logger.info(
      { event_id: letter.eventId, reason: letter.reason, partition: source.partition, offset: source.offset },
      `dead letter: ${letter.message}`,
    );
    // The original bytes, exactly as received, under the original key.
    messages.push({ topic: dlqTopic, key: source.key, value: source.value ?? Buffer.alloc(0), headers: dlqHeaders(args.stage, source, letter, args.now) });
  };
  for (const { source, outcome } of args.outcomes) {
    if (outcome.kind === 'dead-letter') {
      toDlq(source, outcome);
      continue;
    }
    const encoded: OutgoingMessage[] = [];
    try {
      for (const output of outcome.outputs) {
        const encode = args.encoders.get(output.to);
        if (!encode) throw new Error(`stage may not write to ${output.to}`);
        encoded.push({ topic: topicName(args.pipeline, output.to), key: source.key, value: encode(output.value) });
      }
    } catch (error) {
      toDlq(source, deadLetter('OUTPUT_INVALID', `output does not match its contract: ${errorMessage(error)}`, outcome.eventId));
      continue;
    }
    messages.push(...encoded);
  }
  return messages;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Transient: the whole chunk is retried later. Anything else thrown is a defect tied to some record. */
const isTransient = (error: unknown) => isSluiceError(error) && error.retriable;

/**
 * Runs the stage on a chunk. If it throws something that is not transient,
 * the chunk is run again record by record, and each record that still throws
 * is dead-lettered as PROCESSING_FAILED: one poison record must not wedge its
 * partition in an endless retry, nor take its neighbours down with it.
 */
export async function processIsolating<In>(definition: StageDefinition<In>, inputs: Array<StageInput<In>>, logger: Logger): Promise<Outcome[]> {
  try {
    return await definition.process(inputs);
  } catch (error) {
    if (isTransient(error)) throw error;
    logger.error({ err: errorMessage(error), records: inputs.length }, 'stage failed on a chunk; isolating the failing records');
  }
  const outcomes: Outcome[] = [];
  for (const input of inputs) {
    try {
      outcomes.push((await definition.process([input]))[0] ?? deadLetter('OUTPUT_INVALID', 'stage returned no outcome'));
    } catch (error) {
      if (isTransient(error)) throw error;
      outcomes.push(deadLetter('PROCESSING_FAILED', `stage failed on this record: ${errorMessage(error)}`));
    }
  }
  return outcomes;
}

/** Retries a start-up step while the failure is retriable (a service still starting). */
async function untilAvailable<T>(what: string, logger: Logger, step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      const retriable = isSluiceError(error) ? error.retriable : true;
      if (!retriable || attempt >= 30) throw error;
      const delayMs = Math.min(10_000, 250 * 2 ** attempt);
      logger.warn({ err: errorMessage(error), attempt, delayMs }, `${what} failed; retrying`);
      await sleep(delayMs);
    }
  }
}

export type RunningStage = Running;

/**
 * Runs a stage until SIGTERM/SIGINT or stop(). Builds, runs, and closes
 * everything it opened in reverse order.
 */
export async function runStage<In>(args: {
  stage: StageName;
  pipeline: PipelineDefinition;
  connections: Connections;
  factory: StageFactory<In>;
  config?: RuntimeConfig;
  logger?: Logger;
  handleSignals?: boolean;
}): Promise<RunningStage> {
  const { stage, pipeline, connections } = args;
  const config = args.config ?? runtimeConfigFromEnv(stage);
  const logger = args.logger ?? createLogger({ pipeline: pipeline.name, stage });
  const metrics = createStageMetrics({ pipeline: pipeline.name, stage, team: pipeline.owners.team });
  metrics.info.set({ version: process.env.npm_package_version ?? 'dev' }, 1);
  const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
  const resources = new Resources(logger);

  try {
    const { state: control, follower } = await untilAvailable('reading the control topic', logger, () =>
      followControl({ brokers: connections.kafkaBrokers, catalog, clientId: `${pipeline.name}.${stage}.control`, logger }),
    );
    resources.add(() => follower.stop());
    metrics.killSwitch.set(control.killSwitchOn(pipeline.name) ? 1 : 0);
    control.onChange(() => metrics.killSwitch.set(control.killSwitchOn(pipeline.name) ? 1 : 0));

    const definition = await args.factory({ pipeline, catalog, control, logger, metrics, now: Date.now });
    if (definition.close) resources.add(() => definition.close!());

    const encoders = new Map<TopicSuffix, (value: unknown) => Buffer>();
    for (const suffix of definition.outputs) {
      const subject = `${topicName(pipeline.name, suffix)}-value`;
      const { id, type } = await untilAvailable(`resolving ${subject}`, logger, () => catalog.latest(subject));
      encoders.set(suffix, framedEncoder(id, type as AvroType));
    }

    const handle = async (records: SourceRecord[]): Promise<ChunkResult> => {
      // A registry outage throws here (retriable): the chunk is retried, never dead-lettered.
      await catalog.prefetch(records.map((r) => r.value));
      const outcomes: Array<{ source: SourceRecord; outcome: Outcome }> = [];
      const inputs: Array<StageInput<In>> = [];
      for (const source of records) {
        if (definition.inputFormat === 'bytes') {
          inputs.push({ source, value: source.value as In });
          continue;
        }
        if (source.value === null || source.value.length === 0) {
          outcomes.push({ source, outcome: deadLetter('MALFORMED_PAYLOAD', 'empty value on an Avro topic') });
          continue;
        }
        const decoded = catalog.decodeSync(source.value);
        if (decoded.kind === 'decoded') inputs.push({ source, value: decoded.value as In });
        else if (decoded.kind === 'unknown-schema') {
          outcomes.push({ source, outcome: deadLetter('UNKNOWN_SCHEMA', `schema id ${decoded.schemaId} is not in the registry`) });
        } else outcomes.push({ source, outcome: deadLetter('MALFORMED_PAYLOAD', decoded.message) });
      }
      if (inputs.length > 0) {
        const produced = await processIsolating(definition, inputs, logger);
        inputs.forEach((input, i) => {
          outcomes.push({ source: input.source, outcome: produced[i] ?? deadLetter('OUTPUT_INVALID', 'stage returned no outcome') });
        });
      }
      return { messages: outgoingMessages({ pipeline: pipeline.name, stage, outcomes, encoders, now: Date.now(), logger }) };
    };

    let lastCommitAt = Date.now();
    const running = await startExactlyOnce({
      brokers: connections.kafkaBrokers,
      clientId: `sluice.${pipeline.name}.${stage}`,
      groupId: `sluice.${pipeline.name}.${stage}`,
      topic: topicName(pipeline.name, definition.input),
      transactionalIdPrefix: `sluice.${pipeline.name}.${stage}`,
      maxBatchRecords: config.maxBatchRecords,
      transactionTimeoutMs: config.transactionTimeoutMs,
      maxWaitTimeMs: config.fetchMaxWaitMs,
      sessionTimeoutMs: config.sessionTimeoutMs,
      logger,
      handle,
      onCommitted: ({ records, messages, durationMs }) => {
        lastCommitAt = Date.now();
        metrics.recordsIn.inc(records);
        metrics.batchRecords.observe(records);
        metrics.batchDuration.observe(durationMs / 1000);
        metrics.lastProgress.set(lastCommitAt / 1000);
        for (const message of messages) {
          const reason = message.headers?.['dlq.reason'];
          if (reason !== undefined) metrics.deadLetters.inc({ reason });
          metrics.recordsOut.inc({ topic: message.topic });
        }
      },
      onFailure: ({ code }) => {
        metrics.transactionAborts.inc({ cause: code });
        metrics.retries.inc({ code });
      },
    });
    resources.add(() => running.stop());

    if (config.metricsPort > 0) {
      const server = await startMetricsServer(config.metricsPort, metrics.registry, {
        ready: () => {
          if (!running.joined()) return { ready: false, detail: 'not in the consumer group yet' };
          if (running.failing() >= 3) return { ready: false, detail: `retrying a failing batch (${running.failing()} attempts)` };
          return { ready: true, detail: `ok; last commit ${Math.round((Date.now() - lastCommitAt) / 1000)} s ago` };
        },
      });
      resources.add(() => new Promise<void>((resolve) => server.close(() => resolve())));
    }
    logger.info({ input: definition.input, outputs: definition.outputs, ...config }, 'stage running');

    return keepRunning({ resources, logger, stopping: 'finishing the current batch', handleSignals: args.handleSignals !== false });
  } catch (error) {
    await resources.close();
    throw error;
  }
}
