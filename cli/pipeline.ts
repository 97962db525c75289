/** Operator commands for a pipeline: topics, schemas, running a stage, the kill switch. */
import type { Command } from 'commander';
import { ensureTopics, type TopicSpec } from '../connectors/kafka/admin.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { CONTROL_TOPIC, TOPIC_SUFFIXES, topicName } from '../lib/contracts.ts';
import { SluiceError } from '../lib/errors.ts';
import { createCommandLogger, createLogger } from '../lib/log.ts';
import type { PipelinePlugin } from '../lib/pipeline.ts';
import { contractSchemas, controlSchema } from '../lib/schemas.ts';
import { connectionsFromEnv, integerVar, parseEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { decideStage } from '../processors/decide/runner.ts';
import { stageConfigFromEnv } from '../processors/runtime/config.ts';
import { PIPELINE_MODES, type PipelineMode, switchMode } from '../processors/runtime/modes.ts';
import { CONTROL_SUBJECT, KILL_SWITCH_MODEL, writeControl } from '../processors/runtime/control.ts';
import { runStage, type StageModule } from '../processors/runtime/runtime.ts';
import { type ProcessName, STAGE_NAMES, type StageName } from '../processors/runtime/stage.ts';
import { scoreStage } from '../processors/score/runner.ts';
import { validateStage } from '../processors/validate/runner.ts';
import { z } from 'zod';

const DAY_MS = 86_400_000;

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
      'retention.ms': String((suffix === 'dlq' ? config.SLUICE_DLQ_RETENTION_DAYS : config.SLUICE_RETENTION_DAYS) * DAY_MS),
    },
  }));
  specs.push({
    topic: CONTROL_TOPIC,
    partitions: 1,
    replicationFactor: replication,
    config: { ...durability, 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '0', 'segment.ms': String(DAY_MS) },
  });
  return specs;
}

/** Subjects of a pipeline instance and the schema each must carry (its plugin's `.avsc` files). */
export function pipelineSubjects(pipeline: string, plugin: PipelinePlugin = pipelineByName(pipeline).plugin): Array<{ subject: string; schema: unknown }> {
  return [
    ...Object.entries(contractSchemas(plugin.schemasDir)).map(([suffix, schema]) => ({ subject: `${pipeline}.${suffix}-value`, schema })),
    { subject: CONTROL_SUBJECT, schema: controlSchema() },
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

export const STAGE_MODULES: Record<StageName, StageModule> = {
  validate: validateStage as unknown as StageModule,
  score: scoreStage as unknown as StageModule,
  decide: decideStage as unknown as StageModule,
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
      const modules = name === 'all' ? STAGE_NAMES.map((s) => STAGE_MODULES[s]) : [STAGE_MODULES[name]];
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

  const killSwitch = program.command('kill-switch').description("turn the pipeline's model off (on) or back on (off); processors follow within a second");
  for (const state of ['on', 'off'] as const) {
    killSwitch
      .command(state)
      .description(state === 'on' ? 'stop consulting the model: decisions fall back to rules and review' : 'let the model decide again')
      .requiredOption('--pipeline <name>', 'pipeline name')
      .option('--reason <text>', 'why, for the audit trail')
      .action(async (options: { pipeline: string; reason?: string }) => {
        const pipeline = pipelineByName(options.pipeline);
        const connections = connectionsFromEnv();
        await writeControl({
          brokers: connections.kafkaBrokers,
          catalog: new SchemaCatalog(connections.schemaRegistryUrl),
          setting: {
            pipeline: pipeline.name,
            setting: KILL_SWITCH_MODEL,
            value: state,
            reason: options.reason ?? null,
            updated_by: process.env.USER ?? 'sluice-cli',
          },
        });
        process.stdout.write(`kill switch ${state} for ${pipeline.name}\n`);
      });
  }
}
