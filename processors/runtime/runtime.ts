/**
 * The processor runtime, written once and used by every stage: it turns a
 * stage definition into an exactly-once Kafka processor with dead letters,
 * metrics, health endpoints, the control plane and graceful shutdown.
 *
 * Start-up is strict and fast: configuration is parsed before any I/O; the
 * metrics port is bound, the cluster, the topics, the registry and the
 * schemas are checked, and only then does the stage join its group, so a
 * process that cannot work exits within a minute with one line naming the
 * problem and the fix, without rebalancing the instances that can.
 */
import { checkTopics } from '../../connectors/kafka/admin.ts';
import { messageBytes, outputBytes, PartitionEpochs, type RecordOutput, startExactlyOnce } from '../../connectors/kafka/exactly-once.ts';
import { SchemaCatalog } from '../../connectors/registry/registry.ts';
import type { SchemaCodec } from '../../lib/codec.ts';
import { CONTROL_TOPIC, type SourceRecord, type TopicSuffix, topicName } from '../../lib/contracts.ts';
import { SluiceError } from '../../lib/errors.ts';
import { keepRunning, Resources, type Running } from '../../lib/lifecycle.ts';
import { createLogger, type Logger } from '../../lib/log.ts';
import { createStageMetrics, type StageMetrics, startMetricsServer } from '../../lib/metrics.ts';
import { retry } from '../../lib/retry.ts';
import type { Owners, PipelineInstance, PipelinePlugin } from '../../lib/pipeline.ts';
import type { Connections } from '../../lib/settings.ts';
import type { z } from 'zod';

import type { RuntimeConfig } from './config.ts';
import { type ChainLink, chainHandlers } from './colocated.ts';
import { startHeartbeat } from './heartbeat.ts';
import { CIRCUIT_DEFAULTS, CircuitBreaker, type CircuitSettings, type Trip } from './circuit.ts';
import { CONTROL_SUBJECT, circuitSetting, type ControlSetting, type ControlState, followControl, KILL_SWITCH_MODES, parseCircuitSetting, writeControl } from './control.ts';
import { checkMode, groupIdOf } from './modes.ts';
import { createStageHandler, type Encoders, oversizedOutput, type ProcessName, type StageDefinition, type StageName, type StageNote } from './stage.ts';

export { RUNTIME_DEFAULTS, type RuntimeConfig, runtimeConfigFromEnv } from './config.ts';
export { type ProcessName, processIsolating, type StageDefinition, type StageInput, type StageName } from './stage.ts';

/** Start-up checks give up after this long each, so a process that cannot work exits within a minute. */
const PREFLIGHT_DEADLINE_MS = 20_000;

/** The pipeline a stage process serves: its instance name and who owns it. */
export interface StagePipeline {
  /** Names the topics (`<name>.raw`…), groups, subjects and control keys. */
  name: string;
  owners: Owners;
}

/** What the runtime gives a stage when it is built. */
export interface StageServices<P extends StagePipeline = StagePipeline> {
  pipeline: P;
  /** Decodes framed values (the registry adapter in production, an in-memory codec in the test driver). */
  catalog: SchemaCodec;
  control: ControlState;
  logger: Logger;
  metrics: StageMetrics;
  now(): number;
  /**
   * Changes whenever what the stage handled on an input partition may not have
   * been committed (a rewind, a rebalance): state kept beside the outputs must
   * then be reloaded from Kafka. Absent in the broker-free test driver.
   */
  partitionEpoch?(partition: number): number;
}

export type StageFactory<In, P extends StagePipeline = StagePipeline> = (services: StageServices<P>) => Promise<StageDefinition<In>>;

export type RunningStage = Running;

/** A stage as the CLI runs it: its topics, its own settings, and how to build it from them. */
export interface StageModule<S extends Record<string, z.ZodType> = Record<string, z.ZodType>> {
  name: StageName;
  input: TopicSuffix;
  outputs: readonly TopicSuffix[];
  /** The stage's own environment variables (zod schemas over the environment), parsed with the connections and runtime settings. */
  settings(plugin: PipelinePlugin): S;
  // biome-ignore lint/suspicious/noExplicitAny: a stage's input type is its own business; the runtime only passes records through.
  factory(settings: { [K in keyof S]: z.output<S[K]> }): StageFactory<any, PipelineInstance>;
}

/** One stage of a process: its topics, known before it is built (for the start-up checks), and how to build it. */
export interface StagePart<P extends StagePipeline = StagePipeline> {
  stage: StageName;
  topology: { input: TopicSuffix; outputs: readonly TopicSuffix[] };
  // biome-ignore lint/suspicious/noExplicitAny: a stage's input type is its own business; the runtime only passes records through.
  factory: StageFactory<any, P>;
}

/**
 * Runs a stage (or, co-located, a chain of stages) until SIGTERM/SIGINT or
 * stop(). Builds, runs, and closes everything it opened in reverse order.
 */
export async function runStage<P extends StagePipeline>(args: {
  name: ProcessName;
  pipeline: P;
  connections: Connections;
  config: RuntimeConfig;
  /** In order: each part after the first reads what the one before it writes. */
  parts: ReadonlyArray<StagePart<P>>;
  /** The pipeline manifest's circuit breaker settings; the environment's (config.circuit) override them. */
  circuit?: { threshold?: number; window?: number; minRecords?: number; coolDownSeconds?: number };
  logger?: Logger;
  handleSignals?: boolean;
}): Promise<RunningStage> {
  const { name, pipeline, connections, config, parts } = args;
  const logger = args.logger ?? createLogger({ pipeline: pipeline.name, stage: name }, config.logLevel);
  const metrics = createStageMetrics({ pipeline: pipeline.name, stage: name, team: pipeline.owners.team });
  metrics.info.set({ version: process.env.npm_package_version ?? 'dev' }, 1);
  const { data, model, infra, oncall, escalation, runbook } = pipeline.owners;
  metrics.pipelineInfo.set({ data, model, infra, oncall, escalation, runbook }, 1);
  const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
  const resources = new Resources(logger);
  let readiness: () => { ready: boolean; detail: string } = () => ({ ready: false, detail: 'starting' });
  const input = parts[0]!.topology.input;
  const outputs = [...new Set(parts.flatMap((part) => part.topology.outputs))];

  try {
    // The port first: a second instance on a taken port must fail before it joins the group.
    if (config.metricsPort > 0) {
      const server = await startMetricsServer(config.metricsPort, metrics.registry, { ready: () => readiness() });
      resources.add(
        () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections(); // a scraper's keep-alive connection must not hold the exit
          }),
      );
    }

    const fix = `npx sluice topics create --pipeline ${pipeline.name}`;
    const topics = [input, ...outputs, 'dlq' as const].map((suffix) => topicName(pipeline.name, suffix));
    await checkTopics(connections.kafkaBrokers, [...new Set([...topics, CONTROL_TOPIC])], { deadlineMs: PREFLIGHT_DEADLINE_MS, fix });
    await retry(() => catalog.probe(), { what: 'reaching the schema registry', logger, deadlineMs: PREFLIGHT_DEADLINE_MS });
    const encoders = new Map<TopicSuffix, (value: unknown) => Buffer>();
    for (const suffix of outputs) {
      encoders.set(suffix, await catalog.encoderFor(`${topicName(pipeline.name, suffix)}-value`));
    }
    await catalog.latest(CONTROL_SUBJECT);

    const { state: control, follower } = await followControl({ brokers: connections.kafkaBrokers, catalog, clientId: `${pipeline.name}.${name}.control`, logger });
    resources.add(() => follower.stop());
    checkMode(control, pipeline.name, name);
    const showKillSwitch = () => {
      const mode = control.killSwitchMode(pipeline.name);
      metrics.killSwitch.set(mode === 'model' ? 0 : 1);
      for (const each of KILL_SWITCH_MODES) metrics.killSwitchMode.set({ mode: each }, each === mode ? 1 : 0);
    };
    showKillSwitch();
    control.onChange(showKillSwitch);

    const links: ChainLink[] = [];
    const definitions: Array<StageDefinition<unknown>> = [];
    // Fed by the exactly-once loop; read by stages that keep state (validate's duplicate check).
    const epochs = new PartitionEpochs();
    for (const part of parts) {
      const partLogger = parts.length > 1 ? logger.child({ part: part.stage }) : logger;
      const definition = await part.factory({ pipeline, catalog, control, logger: partLogger, metrics, now: Date.now, partitionEpoch: (partition) => epochs.of(partition) });
      if (definition.close) resources.add(() => definition.close!());
      definitions.push(definition);
      if (definition.input !== part.topology.input || definition.outputs.some((o) => !part.topology.outputs.includes(o))) {
        throw new SluiceError('CONFIG_INVALID', `Stage ${part.stage} reads ${definition.input} and writes ${definition.outputs.join(', ')}, not the declared topology.`);
      }
      const handler = createStageHandler({ pipeline: pipeline.name, stage: part.stage, definition, codec: catalog, encoders: encoders as Encoders, logger: partLogger, now: Date.now });
      links.push({ stage: part.stage, input: definition.input, handler });
    }
    const handler = links.length === 1 ? links[0]!.handler : chainHandlers(pipeline.name, links, Date.now);
    let lastCommitAt = Date.now();

    // What holds the input: a stage that says so (decide, parked), and open circuits.
    const circuits = circuitControl({
      pipeline: pipeline.name,
      process: name,
      settings: circuitSettingsOf(args.circuit, config.circuit),
      control,
      connections,
      catalog,
      logger,
      metrics,
    });
    let holdReason: string | null = null;
    const holds = () => {
      holdReason = definitions.map((d) => d.holds?.() ?? null).find((reason) => reason !== null) ?? null;
      return { all: holdReason !== null, partitions: circuits.held() };
    };
    let held = holds();
    const lifecycle = keepRunning({
      resources,
      logger,
      stopping: 'finishing the current transaction',
      handleSignals: args.handleSignals !== false,
      shutdownTimeoutMs: args.handleSignals !== false ? config.shutdownTimeoutMs : undefined,
    });
    const running = await startExactlyOnce<StageNote>({
      epochs,
      brokers: connections.kafkaBrokers,
      clientId: `sluice.${pipeline.name}.${name}`,
      groupId: groupIdOf(pipeline.name, name),
      topic: topicName(pipeline.name, input),
      outputTopics: [...outputs, 'dlq' as const].map((suffix) => topicName(pipeline.name, suffix)),
      transactionalIdPrefix: `sluice.${pipeline.name}.${name}`,
      maxBatchRecords: config.maxBatchRecords,
      maxBatchBytes: config.maxBatchBytes,
      transactionTimeoutMs: config.transactionTimeoutMs,
      maxWaitTimeMs: config.fetchMaxWaitMs,
      sessionTimeoutMs: config.sessionTimeoutMs,
      concurrentPartitions: config.concurrentPartitions,
      logger,
      handle: handler,
      oversized: (record: SourceRecord, output: RecordOutput<StageNote>, roomFor: (topic: string) => number) =>
        oversizedOutput({
          pipeline: pipeline.name,
          stage: parts[0]!.stage,
          source: record,
          note: output.note ?? {},
          outputBytes: outputBytes(output),
          limitBytes: roomFor(topicName(pipeline.name, 'dlq')),
          now: Date.now(),
          sizeOf: messageBytes,
        }),
      onCommitted: ({ partition, records, outputs, durationMs }) => {
        lastCommitAt = Date.now();
        const deadLettered: boolean[] = new Array(outputs.length);
        let letters = 0;
        // Counted per topic, then added once per topic: a labelled inc per message costs a label lookup each.
        const outByTopic = new Map<string, number>();
        for (let i = 0; i < outputs.length; i++) {
          const output = outputs[i]!;
          for (const message of output.messages) outByTopic.set(message.topic, (outByTopic.get(message.topic) ?? 0) + 1);
          deadLettered[i] = output.note?.deadLetter !== undefined;
          if (deadLettered[i]) letters++;
        }
        circuits.committed(partition, deadLettered);
        metrics.recordsIn.inc(records.length);
        metrics.batchRecords.observe(records.length);
        metrics.batchDuration.observe(durationMs / 1000);
        metrics.lastProgress.set(lastCommitAt / 1000);
        for (const [topic, count] of outByTopic) metrics.recordsOut.inc({ topic }, count);
        if (letters === 0) return;
        for (let i = 0; i < outputs.length; i++) {
          const letter = outputs[i]!.note?.deadLetter;
          if (letter === undefined) continue;
          metrics.deadLetters.inc({ reason: letter.reason });
          // Logged once committed: a line claims a dead letter only when it is on the topic.
          const source = records[i]!;
          logger.info({ event_id: letter.eventId, reason: letter.reason, partition: source.partition, offset: source.offset }, `dead letter: ${letter.message}`);
        }
      },
      onFailure: ({ code }) => {
        metrics.transactionAborts.inc({ cause: code });
        metrics.retries.inc({ code });
      },
      onRequest: ({ api, client, durationMs }) => metrics.kafkaRequests.observe({ api, client }, durationMs / 1000),
      onFatal: () => {
        process.exitCode = 1;
        void lifecycle.stop();
      },
      held: () => held,
    });
    resources.add(() => running.stop());
    const reconsider = () => {
      const before = holdReason;
      held = holds();
      running.holdsChanged();
      if (holdReason !== before) logger.warn({ reason: holdReason }, holdReason === null ? 'input released: consuming again' : 'input held: records wait in Kafka');
    };
    control.onChange(reconsider);
    circuits.onChange(reconsider);
    resources.add(circuits.start(() => running.assigned()));
    reconsider();
    const stopHeartbeat = await startHeartbeat({
      brokers: connections.kafkaBrokers,
      pipeline: pipeline.name,
      process: name,
      logger,
      counters: metrics,
      held: () => (held.all ? 'all' : [...held.partitions].sort((a, b) => a - b)),
    });
    resources.add(stopHeartbeat);
    readiness = () => {
      if (!running.joined()) return { ready: false, detail: 'not in the consumer group yet' };
      // Held on purpose is not unready: the process works and would only be restarted into the same hold.
      if (held.all) return { ready: true, detail: `holding every partition: ${holdReason}` };
      if (running.failing() > 0) return { ready: false, detail: `retrying a failing batch (${running.failing()} attempts)` };
      return { ready: true, detail: `ok; last commit ${Math.round((Date.now() - lastCommitAt) / 1000)} s ago` };
    };
    logger.info({ input, outputs, stages: parts.map((part) => part.stage), ...config }, 'stage running');
    return lifecycle;
  } catch (error) {
    await resources.close();
    throw error;
  }
}

/** The manifest's circuit breaker settings, overridden by the environment's, over the defaults. */
export function circuitSettingsOf(manifest: { threshold?: number; window?: number; minRecords?: number; coolDownSeconds?: number } | undefined, env: Partial<CircuitSettings>): CircuitSettings {
  const fromManifest: Partial<CircuitSettings> = {};
  if (manifest?.threshold !== undefined) fromManifest.threshold = manifest.threshold;
  if (manifest?.window !== undefined) fromManifest.window = manifest.window;
  if (manifest?.minRecords !== undefined) fromManifest.minRecords = manifest.minRecords;
  if (manifest?.coolDownSeconds !== undefined) fromManifest.coolDownMs = manifest.coolDownSeconds * 1_000;
  const settings = { ...CIRCUIT_DEFAULTS, ...fromManifest, ...env };
  return { ...settings, minRecords: Math.min(settings.minRecords, settings.window) };
}

/** How often open circuits are checked for the end of their cool-down. */
const COOL_DOWN_CHECK_MS = 1_000;

/**
 * A process's circuit breaker, kept in step with the control topic: a trip
 * here is written there (so another instance that takes the partition over,
 * or this one after a restart, keeps it held, and `sluice status` shows it);
 * `sluice circuit reset` written there closes it here.
 */
function circuitControl(args: {
  pipeline: string;
  process: ProcessName;
  settings: CircuitSettings;
  control: ControlState;
  connections: Connections;
  catalog: SchemaCatalog;
  logger: Logger;
  metrics: StageMetrics;
}) {
  const { pipeline, process: processName, settings, control, logger, metrics } = args;
  const breaker = new CircuitBreaker(settings);
  const listeners: Array<() => void> = [];
  const changed = () => {
    for (const listener of listeners) listener();
  };
  const show = (partition: number, open: boolean) => metrics.circuitOpen.set({ partition: String(partition) }, open ? 1 : 0);
  const write = (partition: number, value: 'open' | 'closed', reason: string) =>
    writeControl({
      brokers: args.connections.kafkaBrokers,
      catalog: args.catalog,
      setting: { pipeline, setting: circuitSetting(processName, partition), value, reason, updated_by: `sluice ${processName} (circuit breaker)` },
    }).catch((error) => logger.error({ err: error, partition, value }, 'could not record the circuit on the control topic; it holds in this process only'));

  for (const { partition, setting } of control.openCircuits(pipeline, processName)) {
    breaker.markOpen(partition, setting.updated_at);
    show(partition, true);
    logger.warn({ partition, since: new Date(setting.updated_at).toISOString(), reason: setting.reason }, `circuit open: partition held; resume with: sluice circuit reset --pipeline ${pipeline} --stage ${processName}`);
  }
  control.onChange((setting: ControlSetting) => {
    if (setting.pipeline !== pipeline) return;
    const circuit = parseCircuitSetting(setting.setting);
    if (circuit === null || circuit.process !== processName) return;
    const { partition } = circuit;
    if (setting.value === 'open') breaker.markOpen(partition, setting.updated_at);
    else if (breaker.state(partition) !== 'closed') {
      breaker.close(partition);
      logger.warn({ partition, by: setting.updated_by, reason: setting.reason }, 'circuit closed: consuming the partition again');
    }
    show(partition, setting.value === 'open');
    changed();
  });

  return {
    /** Partitions held open (a probing partition is consumed). */
    held: (): ReadonlySet<number> => new Set(breaker.open()),
    onChange: (listener: () => void) => listeners.push(listener),
    committed(partition: number, deadLettered: boolean[]) {
      const verdict = breaker.committed(partition, deadLettered);
      if (verdict === null) return;
      if (verdict === 'closed') {
        show(partition, false);
        logger.warn({ partition }, 'circuit closed: the probe transaction passed');
        void write(partition, 'closed', 'probe after the cool-down passed');
        changed();
        return;
      }
      tripped(verdict);
    },
    /** Starts the cool-down check; returns its stop. */
    start(assigned: () => readonly number[]): () => Promise<void> {
      const timer = setInterval(() => {
        const probing = breaker.coolDown(Date.now(), (partition) => assigned().includes(partition));
        if (probing.length === 0) return;
        for (const partition of probing) show(partition, false);
        logger.warn({ partitions: probing }, 'circuit cool-down over: probing with the next transaction');
        changed();
      }, COOL_DOWN_CHECK_MS);
      timer.unref();
      return async () => clearInterval(timer);
    },
  };

  function tripped(trip: Trip) {
    const now = Date.now();
    breaker.markOpen(trip.partition, now);
    metrics.circuitTrips.inc();
    show(trip.partition, true);
    const reason = `${trip.deadLetters} of the last ${trip.records} records dead-lettered${trip.probe ? ' in the probe after the cool-down' : ''}`;
    logger.error(
      { partition: trip.partition, dead_letters: trip.deadLetters, records: trip.records, probe: trip.probe, cool_down_s: settings.coolDownMs / 1_000 },
      `circuit open: ${reason}; partition ${trip.partition} held, its records wait in Kafka. ` +
        `Inspect: sluice dlq inspect --pipeline ${pipeline}; resume: sluice circuit reset --pipeline ${pipeline} --stage ${processName}`,
    );
    void write(trip.partition, 'open', reason);
    changed();
  }
}
