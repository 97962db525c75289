/**
 * `sluice dlq redrive`: sends selected dead letters back to the topic they
 * came from, once the cause is fixed (a limit raised, a stage repaired).
 *
 * - Without `--execute` it prints what it would re-drive and changes nothing.
 * - At most once per dead letter, whatever happens: every re-driven letter is
 *   recorded on the compacted ledger `<p>.dlq-redriven` (key: its partition and
 *   offset on the dead-letter topic) in the same transaction that re-produces
 *   it, so a re-drive killed and run again, or run twice, skips what is done.
 *   One transactional id per pipeline fences a second re-drive running at once.
 * - Never loops: the re-produced record carries `sluice.redrive.id` (and the
 *   dead letter's coordinates); if it fails again, its new dead letter names
 *   the re-drive (`dlq.redrive.id`), and no re-drive picks such a letter up.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { deleteGroups, ensureTopics, openAdmin, readWindow } from '../connectors/kafka/admin.ts';

import { openTransactionalProducer } from '../connectors/kafka/tx.ts';
import { DEAD_LETTER_REASONS, type SourceRecord, topicName } from '../lib/contracts.ts';
import { SluiceError } from '../lib/errors.ts';
import { createCommandLogger, type Logger } from '../lib/log.ts';
import { connectionsFromEnv, integerVar, parseEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { z } from 'zod';
import { pipelineTopics } from './pipeline.ts';
import { sinceMs } from './when.ts';

export const REDRIVE_ID_HEADER = 'sluice.redrive.id';
const settingsSchema = z.object({ SLUICE_REDRIVE_CHUNK_RECORDS: integerVar(1, 5_000).default(500) });

export const ledgerTopic = (pipeline: string) => `${pipeline}.dlq-redriven`;
const ledgerKey = (letter: { partition: number; offset: string }) => `${letter.partition}:${letter.offset}`;

export interface RedrivePlan {
  selected: SourceRecord[];
  /** Already re-driven by an earlier run. */
  done: number;
  /** Dead letters of records a re-drive sent back, which failed again: never re-driven. */
  failedAgain: number;
  /** Decisions the webhook sink could not deliver (`dlq.stage` webhook): re-producing them to `<p>.decided` would decide them again, so they are skipped. */
  webhook: number;
  byReason: Record<string, number>;
  bySourceTopic: Record<string, number>;
}

/** Reads a topic (read-committed) from its start to its current end. */
async function readAll(brokers: string[], topic: string, logger: Logger): Promise<SourceRecord[]> {
  const admin = await openAdmin(brokers, 'sluice-redrive');
  const marks = await admin.partitionWatermarks(topic).finally(() => admin.close());
  const records: SourceRecord[] = [];
  const finished = new Set(marks.filter((m) => m.low === m.high).map((m) => m.partition));
  if (finished.size === marks.length) return records;
  const groupId = `sluice.redrive-read.${randomUUID()}`;
  const reader = await readWindow({
    brokers,
    clientId: 'sluice-redrive',
    groupId,
    topic,
    starts: new Map(marks.map((m) => [m.partition, BigInt(m.low)])),
    ends: new Map(marks.map((m) => [m.partition, BigInt(m.high)])),
    finished,
    logger,
    handle: async (batch) => {
      records.push(...batch.records);
    },
  });
  try {
    await reader.done;
  } finally {
    await reader.stop();
    await deleteGroups(brokers, [groupId]);
  }
  return records;
}

export async function planRedrive(options: { brokers: string[]; pipeline: string; reason?: string; sinceMs: number; untilMs: number; logger: Logger }): Promise<RedrivePlan> {
  const { brokers, pipeline, logger } = options;
  const [letters, ledger] = await Promise.all([readAll(brokers, topicName(pipeline, 'dlq'), logger), readAll(brokers, ledgerTopic(pipeline), logger)]);
  const redriven = new Set(ledger.map((entry) => entry.key?.toString('utf8')));
  const plan: RedrivePlan = { selected: [], done: 0, failedAgain: 0, webhook: 0, byReason: {}, bySourceTopic: {} };
  for (const letter of letters) {
    const reason = letter.headers['dlq.reason'];
    const failedAt = Number(letter.headers['dlq.failed_at']);
    if (options.reason !== undefined && reason !== options.reason) continue;
    if (!(failedAt >= options.sinceMs && failedAt < options.untilMs)) continue;
    if (letter.headers['dlq.redrive.id'] !== undefined) {
      plan.failedAgain++;
      continue;
    }
    if (letter.headers['dlq.stage'] === 'webhook') {
      plan.webhook++;
      continue;
    }
    if (redriven.has(ledgerKey(letter))) {
      plan.done++;
      continue;
    }
    const source = letter.headers['dlq.source.topic'];
    if (source === undefined || letter.value === null) continue;
    plan.selected.push(letter);
    plan.byReason[reason ?? 'unknown'] = (plan.byReason[reason ?? 'unknown'] ?? 0) + 1;
    plan.bySourceTopic[source] = (plan.bySourceTopic[source] ?? 0) + 1;
  }
  return plan;
}

/** Re-produces the plan's letters to their source topics, each recorded on the ledger in the same transaction. */
export async function executeRedrive(options: {
  brokers: string[];
  pipeline: string;
  plan: RedrivePlan;
  redriveId: string;
  chunkRecords: number;
  onProgress(done: number, total: number): void;
}): Promise<number> {
  const { brokers, pipeline, plan, redriveId } = options;
  const producer = await openTransactionalProducer({ brokers, clientId: `sluice.${pipeline}.redrive`, transactionalId: `sluice.${pipeline}.redrive` });
  let done = 0;
  try {
    for (let i = 0; i < plan.selected.length; i += options.chunkRecords) {
      const chunk = plan.selected.slice(i, i + options.chunkRecords);
      const transaction = await producer.begin();
      try {
        const bySource = new Map<string, SourceRecord[]>();
        for (const letter of chunk) {
          const source = letter.headers['dlq.source.topic']!;
          bySource.set(source, [...(bySource.get(source) ?? []), letter]);
        }
        for (const [source, list] of bySource) {
          await transaction.send(
            source,
            list.map((letter) => ({
              key: letter.key,
              value: letter.value!,
              headers: { [REDRIVE_ID_HEADER]: redriveId, 'sluice.redrive.dlq_partition': String(letter.partition), 'sluice.redrive.dlq_offset': letter.offset },
            })),
          );
        }
        const at = Date.now();
        await transaction.send(
          ledgerTopic(pipeline),
          chunk.map((letter) => ({ key: ledgerKey(letter), value: Buffer.from(JSON.stringify({ redrive_id: redriveId, at, source: letter.headers['dlq.source.topic'] })) })),
        );
        await transaction.commit();
      } catch (error) {
        await transaction.abort().catch(() => {});
        throw new SluiceError('KAFKA_TRANSACTION_FAILED', `Re-drive ${redriveId} stopped after ${done} of ${plan.selected.length}; run the same command again to re-drive the rest (nothing is sent twice).`, { cause: error });
      }
      done += chunk.length;
      options.onProgress(done, plan.selected.length);
    }
  } finally {
    await producer.close();
  }
  return done;
}

const counts = (byKey: Record<string, number>) =>
  Object.entries(byKey)
    .sort((a, b) => b[1] - a[1])
    .map(([key, n]) => `${key} ${n}`)
    .join(', ') || 'none';

export function registerRedriveCommand(dlq: Command): void {
  dlq
    .command('redrive')
    .description('send dead letters back to their source topic, at most once each; without --execute, only say what would be sent')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .option('--reason <reason>', `only this reason: ${DEAD_LETTER_REASONS.join(', ')}`)
    .option('--since <when>', 'dead letters from (a duration back from now, or an ISO-8601 time)', '7d')
    .option('--until <when>', 'and before (same forms; default: now)')
    .option('--execute', 're-drive them')
    .option('--json', 'print the plan or the result as JSON')
    .action(async (options: { pipeline: string; reason?: string; since: string; until?: string; execute?: boolean; json?: boolean }) => {
      const pipeline = pipelineByName(options.pipeline);
      if (options.reason !== undefined && !(DEAD_LETTER_REASONS as readonly string[]).includes(options.reason)) {
        throw new SluiceError('CONFIG_INVALID', `Unknown reason "${options.reason}": use one of ${DEAD_LETTER_REASONS.join(', ')}.`);
      }
      const settings = parseEnv(settingsSchema);
      const connections = connectionsFromEnv();
      const logger = createCommandLogger({ pipeline: pipeline.name, component: 'redrive' }, 'warn');
      const now = Date.now();
      const replicationFactor = pipelineTopics(pipeline.name)[0]!.replicationFactor;
      await ensureTopics(connections.kafkaBrokers, [{ topic: ledgerTopic(pipeline.name), partitions: 1, replicationFactor, config: { 'cleanup.policy': 'compact' } }]);
      const plan = await planRedrive({
        brokers: connections.kafkaBrokers,
        pipeline: pipeline.name,
        reason: options.reason,
        sinceMs: sinceMs(options.since, now),
        untilMs: options.until === undefined ? now + 1 : sinceMs(options.until, now),
        logger,
      });
      const summary = { selected: plan.selected.length, by_reason: plan.byReason, by_source_topic: plan.bySourceTopic, already_redriven: plan.done, failed_after_redrive: plan.failedAgain, webhook_skipped: plan.webhook };
      if (!options.execute) {
        if (options.json) return void process.stdout.write(`${JSON.stringify({ plan: summary }, null, 2)}\n`);
        process.stdout.write(
          `would re-drive ${plan.selected.length} dead letter(s) of ${pipeline.name}\n  by reason: ${counts(plan.byReason)}\n  to: ${counts(plan.bySourceTopic)}\n` +
            `  skipped: ${plan.done} already re-driven, ${plan.failedAgain} that failed again after a re-drive, ` +
            `${plan.webhook} webhook delivery failure(s) (not re-driven: they would be decided again; see docs/webhook.md)\nrun again with --execute to send them\n`,
        );
        return;
      }
      const redriveId = `redrive-${new Date(now).toISOString().replace(/[-:]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
      const redriven = await executeRedrive({
        brokers: connections.kafkaBrokers,
        pipeline: pipeline.name,
        plan,
        redriveId,
        chunkRecords: settings.SLUICE_REDRIVE_CHUNK_RECORDS,
        onProgress: (done, total) => process.stderr.write(`\rre-driven ${done}/${total}`),
      });
      if (plan.selected.length > 0) process.stderr.write('\n');
      const result = { redrive_id: redriveId, redriven, ...summary };
      const webhookNote = plan.webhook > 0 ? `; skipped ${plan.webhook} webhook delivery failure(s) (never re-driven; see docs/webhook.md)` : '';
      process.stdout.write(options.json ? `${JSON.stringify(result, null, 2)}\n` : `${redriveId}: re-drove ${redriven} dead letter(s) (${counts(plan.byReason)}) to ${counts(plan.bySourceTopic)}${webhookNote}\n`);
    });
}
