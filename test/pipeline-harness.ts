/**
 * A pipeline instance of its own for a test (signup-risk unless another kind is asked for): unique topics,
 * subjects, groups and control keys, its three stages as real processes, and
 * collectors that read what it writes (read-committed, like any consumer).
 */
import { join } from 'node:path';
import { registerPipelineSchemas, pipelineTopics } from '../cli/pipeline.ts';
import { stackPaths } from '../deploy/local/stack.ts';
import { STAGES, type StageProcess, spawnStage } from '../cli/processes.ts';
import { deleteTopics, ensureTopics, groupLag, openProducer, type PlainMessage } from '../connectors/kafka/admin.ts';
import { type FollowedMessage, type Follower, followTopic } from '../connectors/kafka/follow.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { createLogger } from '../lib/log.ts';
import { pipelineTopicNames, type TopicSuffix, topicName } from '../lib/contracts.ts';
import { type PipelineMode, switchMode } from '../processors/runtime/modes.ts';
import type { ProcessName } from '../processors/runtime/stage.ts';
import { connections, uniqueName, waitFor } from './helpers.ts';

export interface Collected<T = unknown> {
  key: string | null;
  value: T;
  raw: Buffer | null;
  headers: Record<string, string>;
  partition: number;
  offset: string;
}

export class Collector<T = unknown> {
  readonly messages: Array<Collected<T>> = [];
  follower?: Follower;

  /** Waits until `predicate` holds over everything collected so far. */
  until(what: string, predicate: (messages: Array<Collected<T>>) => boolean, timeoutMs = 60_000): Promise<Array<Collected<T>>> {
    return waitFor(what, () => (predicate(this.messages) ? this.messages : undefined), { timeoutMs });
  }
}

const quietLogger = createLogger({ component: 'test-collector' }, 'error');

export class PipelineInstance {
  readonly name: string;
  readonly catalog = new SchemaCatalog(connections.schemaRegistryUrl);
  readonly stages = new Map<ProcessName, StageProcess>();
  private readonly collectors: Collector[] = [];
  private readonly stageEnv: Record<string, string>;

  private constructor(name: string, stageEnv: Record<string, string>) {
    this.name = name;
    this.stageEnv = stageEnv;
  }

  /** Creates the instance's topics and subjects. */
  static async create(prefix: string, stageEnv: Record<string, string> = {}, kind = 'signup-risk'): Promise<PipelineInstance> {
    const instance = new PipelineInstance(`${kind}-${uniqueName(prefix)}`, stageEnv);
    await ensureTopics(connections.kafkaBrokers, pipelineTopics(instance.name));
    await registerPipelineSchemas(instance.name, connections.schemaRegistryUrl);
    return instance;
  }

  topic(suffix: TopicSuffix): string {
    return topicName(this.name, suffix);
  }

  /** Starts one stage, or `all` (co-located mode), with the instance's stage settings or `env`. */
  startStage(stage: ProcessName, env: Record<string, string> = this.stageEnv): StageProcess {
    const process = spawnStage({
      pipeline: this.name,
      stage,
      env,
      logFile: join(stackPaths().logs, 'tests', `${this.name}.${stage}.log`),
    });
    this.stages.set(stage, process);
    return process;
  }

  /** Records the instance's mode (`sluice mode set`), moving its groups' positions; its processes must be stopped. */
  async setMode(mode: PipelineMode): Promise<void> {
    await switchMode({ brokers: connections.kafkaBrokers, catalog: this.catalog, pipeline: this.name, to: mode, reason: 'test', updatedBy: 'test', logger: quietLogger });
  }

  /** Stops one stage process (SIGTERM: it finishes its transaction) and forgets it. */
  async stopStage(stage: ProcessName, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string | undefined> {
    const process = this.stages.get(stage);
    this.stages.delete(stage);
    process?.kill(signal);
    return process?.exited;
  }

  /** Starts all three stages and waits until each is running. */
  async start(): Promise<void> {
    await Promise.all(STAGES.map((stage) => this.startStage(stage).running));
  }

  async produce(messages: PlainMessage[]): Promise<void> {
    const producer = await openProducer(connections.kafkaBrokers, 'sluice-test');
    try {
      for (let i = 0; i < messages.length; i += 500) await producer.send(this.topic('raw'), messages.slice(i, i + 500));
    } finally {
      await producer.close();
    }
  }

  /** Follows one of the instance's topics from the beginning; Avro values are decoded. */
  async collect<T>(suffix: TopicSuffix, format: 'avro' | 'bytes' = 'avro'): Promise<Collector<T>> {
    const collector = new Collector<T>();
    const pending: FollowedMessage[] = [];
    const decodeAll = async () => {
      while (pending.length > 0) {
        const message = pending[0]!;
        let value: unknown = message.value;
        if (format === 'avro' && message.value) {
          await this.catalog.prefetch([message.value]);
          const decoded = this.catalog.decodeSync(message.value);
          value = decoded.kind === 'decoded' ? { ...(decoded.value as object) } : decoded;
        }
        collector.messages.push({
          key: message.key,
          value: value as T,
          raw: message.value,
          headers: message.headers,
          partition: message.partition,
          offset: message.offset,
        });
        pending.shift();
      }
    };
    let chain = Promise.resolve();
    collector.follower = await followTopic({
      brokers: connections.kafkaBrokers,
      topic: this.topic(suffix),
      clientId: `test-${suffix}`,
      logger: quietLogger,
      onMessage: (message) => {
        pending.push(message);
        chain = chain.then(decodeAll);
      },
    });
    this.collectors.push(collector as Collector);
    return collector;
  }

  /**
   * Waits until every stage has committed everything on its input topic (the
   * transactional ones may end in one commit marker), twice in a row.
   */
  async waitForIdle(timeoutMs = 120_000): Promise<void> {
    // Every input may end in one commit marker: raw too, when a transactional
    // producer writes it (the ingest gateway, a dead-letter re-drive).
    const inputs: Array<[ProcessName, TopicSuffix]> = this.stages.has('all')
      ? [['all', 'raw']]
      : [
          ['validate', 'raw'],
          ['score', 'validated'],
          ['decide', 'scored'],
        ];
    let streak = 0;
    await waitFor(
      `${this.name} idle`,
      async () => {
        for (const [stage, input] of inputs) {
          const lag = await groupLag(connections.kafkaBrokers, `sluice.${this.name}.${stage}`, this.topic(input));
          const behind = lag.some((p) => p.end > 0n && p.committed < p.end - 1n);
          if (behind) {
            streak = 0;
            return false;
          }
        }
        streak++;
        return streak >= 2;
      },
      { timeoutMs, intervalMs: 500 },
    );
  }

  async stop(): Promise<void> {
    for (const stage of this.stages.values()) stage.kill('SIGKILL');
    await Promise.all([...this.stages.values()].map((stage) => stage.exited));
    await Promise.all(this.collectors.map((collector) => collector.follower?.stop()));
    await deleteTopics(connections.kafkaBrokers, pipelineTopicNames(this.name)).catch(() => {});
  }
}
