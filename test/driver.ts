/**
 * The broker-free test driver, as Kafka Streams' TopologyTestDriver does it:
 * a pipeline's real stages (validate → score → decide, the real model, the
 * real policy, the real Avro contracts from its `.avsc` files) run through the
 * same stage core as in production (processors/runtime/stage.ts), with an
 * in-memory codec instead of the registry and arrays instead of topics.
 */
import { MemoryCodec } from '../connectors/registry/memory.ts';
import { type CONTRACT_TOPICS, type SourceRecord, type TopicSuffix, topicName } from '../lib/contracts.ts';
import { createLogger } from '../lib/log.ts';
import { createStageMetrics } from '../lib/metrics.ts';
import type { PipelineInstance } from '../lib/pipeline.ts';
import { contractSchemas } from '../lib/schemas.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { STAGE_MODULES } from '../cli/pipeline.ts';
import { parseEnvSchemas } from '../lib/settings.ts';
import { chainHandlers } from '../processors/runtime/colocated.ts';
import { changelogSchema } from '../processors/validate/changelog.ts';
import { ControlState, KILL_SWITCH_MODEL } from '../processors/runtime/control.ts';
import { createStageHandler, type StageHandler, type StageMessage, STAGE_NAMES } from '../processors/runtime/stage.ts';

export interface DrivenMessage {
  topic: string;
  key: string | null;
  /** Decoded for Avro topics; the original bytes on the dead-letter topic. */
  value: unknown;
  raw: Buffer;
  headers: Record<string, string>;
}

export class PipelineDriver {
  readonly pipeline: PipelineInstance;
  readonly codec = new MemoryCodec();
  readonly control = new ControlState();
  private readonly handlers = new Map<TopicSuffix, StageHandler>();
  /**
   * pipeColocated's own stage instances, built on first use: `sluice run <stage>` and `sluice run all`
   * are separate processes, each with its own state (validate's duplicate check).
   */
  private readonly colocatedHandlers = new Map<TopicSuffix, StageHandler>();
  private build: (into: Map<TopicSuffix, StageHandler>) => Promise<void> = async () => {};
  private readonly closers: Array<() => Promise<void>> = [];
  private offset = 0;
  clockMs: number;

  private constructor(pipeline: PipelineInstance, clockMs: number) {
    this.pipeline = pipeline;
    this.clockMs = clockMs;
  }

  /** Builds the three stages of `name` (a pipeline or an instance of one); `env` holds stage settings (thresholds…). */
  static async create(name: string, options: { env?: NodeJS.ProcessEnv; clockMs?: number } = {}): Promise<PipelineDriver> {
    const driver = new PipelineDriver(pipelineByName(name), options.clockMs ?? Date.UTC(2026, 11, 1));
    // The control subject is not needed: the driver's control state is set directly (setKillSwitch).
    const { pipeline, codec } = driver;
    for (const [topic, schema] of Object.entries(contractSchemas(pipeline.plugin.schemasDir))) {
      codec.register(`${topicName(pipeline.name, topic as (typeof CONTRACT_TOPICS)[number])}-value`, schema);
    }
    // validate also writes its duplicate-check changelog.
    codec.register(`${topicName(pipeline.name, 'validate-dedup')}-value`, changelogSchema());
    const logger = createLogger({ pipeline: pipeline.name, component: 'driver' }, 'silent');
    const now = () => driver.clockMs;
    driver.build = async (into) => {
      for (const stage of STAGE_NAMES) {
        const module = await STAGE_MODULES[stage]();
        const settings = parseEnvSchemas(module.settings(pipeline.plugin), options.env ?? {});
        const definition = await module.factory(settings)({
          pipeline,
          catalog: codec,
          control: driver.control,
          logger,
          metrics: createStageMetrics({ pipeline: pipeline.name, stage, team: pipeline.owners.team }),
          now,
        });
        if (definition.close) driver.closers.push(definition.close);
        const encoders = new Map(definition.outputs.map((suffix) => [suffix, codec.encoderForSync(`${topicName(pipeline.name, suffix)}-value`)]));
        into.set(definition.input, createStageHandler({ pipeline: pipeline.name, stage, definition, codec, encoders, logger, now }));
      }
    };
    await driver.build(driver.handlers);
    return driver;
  }

  setKillSwitch(on: boolean): void {
    this.control.apply(`${this.pipeline.name}/${KILL_SWITCH_MODEL}`, {
      pipeline: this.pipeline.name,
      setting: KILL_SWITCH_MODEL,
      value: on ? 'on' : 'off',
      reason: null,
      updated_by: 'driver',
      updated_at: this.clockMs,
    });
  }

  /**
   * Pipes raw records through validate → score → decide and returns every
   * message written, by topic suffix (`decided`, `review`, `dlq`, …).
   */
  async pipe(raw: Array<{ key: string | null; value: Buffer | null }>): Promise<Record<TopicSuffix, DrivenMessage[]>> {
    const written = new Written(this);
    let records = this.rawRecords(raw);
    for (const input of STAGE_INPUTS) {
      const outputs = await this.handlers.get(input)!(records);
      const next: SourceRecord[] = [];
      for (const message of outputs.flatMap((output) => output.messages)) {
        if (written.add(message) === nextInput(input)) next.push(this.source(message.topic, message.key, message.value));
      }
      records = next;
    }
    return written.bySuffix();
  }

  /**
   * The same records through the co-located chain (`sluice run all`): one
   * handler for the three stages, as one process runs them in one transaction.
   */
  async pipeColocated(raw: Array<{ key: string | null; value: Buffer | null }>): Promise<Record<TopicSuffix, DrivenMessage[]>> {
    if (this.colocatedHandlers.size === 0) await this.build(this.colocatedHandlers);
    const links = STAGE_INPUTS.map((input, i) => ({ stage: STAGE_NAMES[i]!, input, handler: this.colocatedHandlers.get(input)! }));
    const chained = chainHandlers(this.pipeline.name, links, () => this.clockMs);
    const written = new Written(this);
    for (const output of await chained(this.rawRecords(raw))) for (const message of output.messages) written.add(message);
    return written.bySuffix();
  }

  async close(): Promise<void> {
    for (const close of this.closers) await close();
  }

  private rawRecords(raw: Array<{ key: string | null; value: Buffer | null }>): SourceRecord[] {
    return raw.map((r) => this.source(topicName(this.pipeline.name, 'raw'), r.key === null ? null : Buffer.from(r.key), r.value));
  }

  private source(topic: string, key: Buffer | null, value: Buffer | null): SourceRecord {
    return { topic, partition: 0, offset: String(this.offset++), key, value, headers: {}, timestampMs: this.clockMs };
  }

  /** A written message as a test reads it: Avro decoded, dead letters as bytes. */
  decoded(message: StageMessage, suffix: TopicSuffix): DrivenMessage {
    let value: unknown = message.value;
    if (suffix !== 'dlq') {
      const decoded = this.codec.decodeSync(message.value);
      value = decoded.kind === 'decoded' ? { ...(decoded.value as object) } : decoded;
    }
    return { topic: message.topic, key: message.key?.toString('utf8') ?? null, value, raw: message.value, headers: message.headers ?? {} };
  }
}

const STAGE_INPUTS = ['raw', 'validated', 'scored'] as const;

/** Messages written, by topic suffix, decoded. */
class Written {
  private readonly messages: Record<string, DrivenMessage[]> = {};
  private readonly driver: PipelineDriver;

  constructor(driver: PipelineDriver) {
    this.driver = driver;
  }

  add(message: StageMessage): TopicSuffix {
    const suffix = message.topic.slice(this.driver.pipeline.name.length + 1) as TopicSuffix;
    const list = this.messages[suffix] ?? [];
    list.push(this.driver.decoded(message, suffix));
    this.messages[suffix] = list;
    return suffix;
  }

  bySuffix(): Record<TopicSuffix, DrivenMessage[]> {
    for (const suffix of ['validated', 'scored', 'decided', 'review', 'dlq'] as const) this.messages[suffix] ??= [];
    return this.messages as Record<TopicSuffix, DrivenMessage[]>;
  }
}

const nextInput = (input: 'raw' | 'validated' | 'scored'): TopicSuffix => ({ raw: 'validated', validated: 'scored', scored: 'decided' })[input] as TopicSuffix;
