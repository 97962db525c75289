/** Operator commands for a pipeline: topics, schemas, running a stage, the kill switch. */
import type { Command } from 'commander';
import { ensureTopics, type TopicSpec } from '../connectors/kafka/admin.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { CONTROL_TOPIC, INSTANCES_TOPIC, TOPIC_SUFFIXES, topicName } from '../lib/contracts.ts';
import { SluiceError } from '../lib/errors.ts';
import { createCommandLogger, createLogger } from '../lib/log.ts';
import type { PipelinePlugin } from '../lib/pipeline.ts';
import { contractSchemas, controlSchema } from '../lib/schemas.ts';
import { connectionsFromEnv, integerVar, parseEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { stageConfigFromEnv } from '../processors/runtime/config.ts';
import { PIPELINE_MODES, type PipelineMode, switchMode } from '../processors/runtime/modes.ts';
import {
  CONTROL_SUBJECT,
  circuitSetting,
  KILL_SWITCH_ALIASES,
  KILL_SWITCH_MODEL,
  KILL_SWITCH_MODES,
  type KillSwitchMode,
  readControl,
  writeControl,
} from '../processors/runtime/control.ts';
import { runStage, type StageModule } from '../processors/runtime/runtime.ts';
import { type ProcessName, STAGE_NAMES, type StageName } from '../processors/runtime/stage.ts';
import { changelogSchema, changelogTopicConfig } from '../processors/validate/changelog.ts';
import { VALIDATE_DEFAULTS } from '../processors/validate/config.ts';
import { z } from 'zod';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

export const TOPIC_DEFAULTS = {
  partitions: 3,
  replicationFactor: 1,
  retentionDays: 7,
  /** Dead letters wait for a human: kept longer than the stream itself. */
  dlqRetentionDays: 30,
} as const;

const topicsSchema = z.object({
  SLUICE_TOPIC_PARTITIONS: integerVar(1, 1_000).default(TOPIC_DEFAULTS.partitions),
  SLUICE_REPLICATION_FACTOR: integerVar(1, 7).default(TOPIC_DEFAULTS.replicationFactor),
  SLUICE_RETENTION_DAYS: integerVar(1, 36_500).default(TOPIC_DEFAULTS.retentionDays),
  SLUICE_DLQ_RETENTION_DAYS: integerVar(1, 36_500).default(TOPIC_DEFAULTS.dlqRetentionDays),
});

/** Every topic of a pipeline, plus the shared compacted control topic. */
export function pipelineTopics(pipeline: string, env: NodeJS.ProcessEnv = process.env): TopicSpec[] {
  const config = parseEnv(topicsSchema, env);
  const replication = config.SLUICE_REPLICATION_FACTOR;
  // With replicas, a write must reach two of them (production: RF 3, min ISR 2).
  const durability: Record<string, string> = replication >= 3 ? { 'min.insync.replicas': '2' } : {};
  const specs: TopicSpec[] = TOPIC_SUFFIXES.map((suffix) => ({
    topic: topicName(pipeline, suffix),
    partitions: config.SLUICE_TOPIC_PARTITIONS,
    replicationFactor: replication,
    config: {
      ...durability,
      ...(suffix === 'validate-dedup'
        ? changelogTopicConfig(dedupWindowOf(pipeline))
        : { 'retention.ms': String((suffix === 'dlq' ? config.SLUICE_DLQ_RETENTION_DAYS : config.SLUICE_RETENTION_DAYS) * DAY_MS) }),
    },
  }));
  specs.push({
    topic: CONTROL_TOPIC,
    partitions: 1,
    replicationFactor: replication,
    config: { ...durability, 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '0', 'segment.ms': String(DAY_MS) },
  });
  // Heartbeats: only the latest per instance matters, and a stopped one's tombstone soon goes too.
  specs.push({
    topic: INSTANCES_TOPIC,
    partitions: 1,
    replicationFactor: replication,
    config: { ...durability, 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '0', 'segment.ms': String(HOUR_MS), 'delete.retention.ms': String(HOUR_MS) },
  });
  return specs;
}

/** The validate stage's dedup window (the manifest's, or the default for a name that is no pipeline, as benchmarks use). */
function dedupWindowOf(pipeline: string): number {
  try {
    return pipelineByName(pipeline).plugin.ingest?.dedupWindowMs ?? VALIDATE_DEFAULTS.dedupWindowMs;
  } catch {
    return VALIDATE_DEFAULTS.dedupWindowMs;
  }
}

/** Subjects of a pipeline instance and the schema each must carry (its plugin's `.avsc` files). */
export function pipelineSubjects(pipeline: string, plugin: PipelinePlugin = pipelineByName(pipeline).plugin): Array<{ subject: string; schema: unknown }> {
  return [
    ...Object.entries(contractSchemas(plugin.schemasDir)).map(([suffix, schema]) => ({ subject: `${pipeline}.${suffix}-value`, schema })),
    { subject: CONTROL_SUBJECT, schema: controlSchema() },
    // validate's duplicate-check changelog: one contract for every pipeline.
    { subject: `${pipeline}.validate-dedup-value`, schema: changelogSchema() },
  ];
}

export async function registerPipelineSchemas(pipeline: string, registryUrl: string): Promise<Array<{ subject: string; id: number }>> {
  const catalog = new SchemaCatalog(registryUrl);
  await catalog.setCompatibility('BACKWARD');
  const registered: Array<{ subject: string; id: number }> = [];
  for (const { subject, schema } of pipelineSubjects(pipeline)) {
    registered.push({ subject, id: await catalog.register(subject, schema) });
  }
  return registered;
}

/**
 * Each stage's module, loaded when a process runs it: a validate or decide
 * process never loads the model runtime (onnxruntime), nor validate the policy.
 */
export const STAGE_MODULES: Record<StageName, () => Promise<StageModule>> = {
  validate: async () => (await import('../processors/validate/runner.ts')).validateStage as unknown as StageModule,
  score: async () => (await import('../processors/score/runner.ts')).scoreStage as unknown as StageModule,
  decide: async () => (await import('../processors/decide/runner.ts')).decideStage as unknown as StageModule,
};

/** What each kill-switch mode does, said when it is set. */
const KILL_SWITCH_EFFECT: Record<KillSwitchMode, string> = {
  model: ' (the model decides again)',
  rules: ' (no model: rules, then the fallback decision)',
  review: ' (every event goes to human review)',
  park: ' (decide holds every event in Kafka, undecided; its lag grows until the mode changes)',
};

export function registerPipelineCommands(program: Command): void {
  program
    .command('topics')
    .description('manage a pipeline\'s topics')
    .command('create')
    .description('create every topic of the pipeline (idempotent); partitions and replication from SLUICE_TOPIC_PARTITIONS, SLUICE_REPLICATION_FACTOR')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .action(async (options: { pipeline: string }) => {
      const pipeline = pipelineByName(options.pipeline);
      const specs = pipelineTopics(pipeline.name);
      const created = new Set(await ensureTopics(connectionsFromEnv().kafkaBrokers, specs));
      for (const spec of specs) {
        process.stdout.write(`${created.has(spec.topic) ? 'created' : 'exists '}  ${spec.topic}  partitions=${spec.partitions} replication=${spec.replicationFactor}\n`);
      }
    });

  program
    .command('schemas')
    .description('manage a pipeline\'s Avro contracts in the schema registry')
    .command('register')
    .description('register every subject of the pipeline under BACKWARD compatibility; refuses an incompatible change')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .action(async (options: { pipeline: string }) => {
      const pipeline = pipelineByName(options.pipeline);
      for (const { subject, id } of await registerPipelineSchemas(pipeline.name, connectionsFromEnv().schemaRegistryUrl)) {
        process.stdout.write(`${subject}  id=${id}\n`);
      }
    });

  program
    .command('run')
    .description('run one stage of a pipeline as this process (or all three co-located), until SIGTERM or SIGINT')
    .argument('<stage>', 'validate | score | decide, or all: the three stages in one process, one transaction per chunk (see README: choosing a mode)')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .action(async (stage: string, options: { pipeline: string }) => {
      if (stage !== 'all' && !Object.hasOwn(STAGE_MODULES, stage)) throw new SluiceError('CONFIG_INVALID', `Unknown stage "${stage}": use validate, score, decide or all.`);
      const name = stage as ProcessName;
      const modules = await Promise.all((name === 'all' ? STAGE_NAMES : [name]).map((s) => STAGE_MODULES[s]()));
      const pipeline = pipelineByName(options.pipeline);
      // Every setting of the process, parsed before any I/O.
      const settings = stageConfigFromEnv(name, Object.assign({}, ...modules.map((module) => module.settings(pipeline.plugin))));
      const logger = createLogger({ pipeline: pipeline.name, stage: name }, settings.runtime.logLevel);
      const running = await runStage({
        name,
        pipeline,
        connections: settings.connections,
        config: settings.runtime,
        parts: modules.map((module) => ({ stage: module.name, topology: module, factory: module.factory(settings) })),
        circuit: pipeline.plugin.circuitBreaker,
        logger,
      });
      await running.done;
    });

  program
    .command('mode')
    .description('switch a stopped pipeline between independent stages and co-located mode (sluice run all); the new mode continues where the old one stopped')
    .command('set')
    .argument('<mode>', PIPELINE_MODES.join(' | '))
    .requiredOption('--pipeline <name>', 'pipeline name')
    .option('--reason <text>', 'why, for the audit trail')
    .action(async (mode: string, options: { pipeline: string; reason?: string }) => {
      if (!(PIPELINE_MODES as readonly string[]).includes(mode)) throw new SluiceError('CONFIG_INVALID', `Unknown mode "${mode}": use ${PIPELINE_MODES.join(' or ')}.`);
      const pipeline = pipelineByName(options.pipeline);
      const connections = connectionsFromEnv();
      const result = await switchMode({
        brokers: connections.kafkaBrokers,
        catalog: new SchemaCatalog(connections.schemaRegistryUrl),
        pipeline: pipeline.name,
        to: mode as PipelineMode,
        reason: options.reason ?? null,
        updatedBy: process.env.USER ?? 'sluice-cli',
        logger: createCommandLogger({ pipeline: pipeline.name, component: 'mode' }, 'warn'),
      });
      if (result.from === result.to) {
        process.stdout.write(`${pipeline.name} already runs ${result.to}\n`);
        return;
      }
      for (const [group, offsets] of Object.entries(result.positions)) {
        process.stdout.write(`${group}  ${offsets.map((o) => `${o.partition}:${o.offset}`).join(' ') || '(nothing consumed yet)'}\n`);
      }
      process.stdout.write(`${pipeline.name}: ${result.from} → ${result.to}; start its processes with ${result.to === 'colocated' ? '`sluice run all`' : '`sluice run validate|score|decide`'}\n`);
    });

  const killSwitch = program
    .command('kill-switch')
    .description('the tiered kill switch: model (normal), rules (no model), review (every event to people) or park (hold events undecided); processors follow within a second');
  const setKillSwitch = async (pipelineName: string, mode: KillSwitchMode, reason: string | undefined) => {
    const pipeline = pipelineByName(pipelineName);
    const connections = connectionsFromEnv();
    const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
    const logger = createCommandLogger({ pipeline: pipeline.name, component: 'kill-switch' }, 'warn');
    const before = (await readControl({ brokers: connections.kafkaBrokers, catalog, clientId: 'sluice-kill-switch', logger })).killSwitchMode(pipeline.name);
    await writeControl({
      brokers: connections.kafkaBrokers,
      catalog,
      setting: { pipeline: pipeline.name, setting: KILL_SWITCH_MODEL, value: mode, reason: reason ?? null, updated_by: process.env.USER ?? 'sluice-cli' },
    });
    process.stdout.write(`kill switch for ${pipeline.name}: ${before} → ${mode}${KILL_SWITCH_EFFECT[mode]}\n`);
  };
  killSwitch
    .command('set')
    .description('set the kill switch mode')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .requiredOption('--mode <mode>', KILL_SWITCH_MODES.join(' | '))
    .option('--reason <text>', 'why, for the audit trail (shown in sluice status)')
    .action(async (options: { pipeline: string; mode: string; reason?: string }) => {
      const mode = KILL_SWITCH_ALIASES[options.mode] ?? options.mode;
      if (!(KILL_SWITCH_MODES as readonly string[]).includes(mode)) {
        throw new SluiceError('CONFIG_INVALID', `Unknown kill-switch mode "${options.mode}": use ${KILL_SWITCH_MODES.join(', ')} (or on/off for rules/model).`);
      }
      await setKillSwitch(options.pipeline, mode as KillSwitchMode, options.reason);
    });
  for (const [alias, mode] of Object.entries(KILL_SWITCH_ALIASES)) {
    killSwitch
      .command(alias)
      .description(`the same as set --mode ${mode}`)
      .requiredOption('--pipeline <name>', 'pipeline name')
      .option('--reason <text>', 'why, for the audit trail')
      .action((options: { pipeline: string; reason?: string }) => setKillSwitch(options.pipeline, mode, options.reason));
  }

  program
    .command('circuit')
    .description("a stage's circuit breaker, which holds a partition whose records are mostly dead-lettered")
    .command('reset')
    .description('close the open circuits of a stage: its held partitions are consumed again (fix the cause first: sluice dlq inspect)')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .requiredOption('--stage <stage>', 'validate | score | decide | all')
    .option('--reason <text>', 'why, for the audit trail')
    .action(async (options: { pipeline: string; stage: string; reason?: string }) => {
      if (options.stage !== 'all' && !(STAGE_NAMES as readonly string[]).includes(options.stage)) {
        throw new SluiceError('CONFIG_INVALID', `Unknown stage "${options.stage}": use validate, score, decide or all.`);
      }
      const pipeline = pipelineByName(options.pipeline);
      const connections = connectionsFromEnv();
      const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
      const logger = createCommandLogger({ pipeline: pipeline.name, component: 'circuit' }, 'warn');
      const open = (await readControl({ brokers: connections.kafkaBrokers, catalog, clientId: 'sluice-circuit', logger })).openCircuits(pipeline.name, options.stage);
      if (open.length === 0) {
        process.stdout.write(`no open circuit on ${pipeline.name} ${options.stage}\n`);
        return;
      }
      for (const { partition, setting } of open) {
        await writeControl({
          brokers: connections.kafkaBrokers,
          catalog,
          setting: { pipeline: pipeline.name, setting: circuitSetting(options.stage, partition), value: 'closed', reason: options.reason ?? 'reset by an operator', updated_by: process.env.USER ?? 'sluice-cli' },
        });
        process.stdout.write(`closed ${pipeline.name} ${options.stage} partition ${partition} (open since ${new Date(setting.updated_at).toISOString()}: ${setting.reason ?? ''})\n`);
      }
    });
}
