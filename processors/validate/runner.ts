/**
 * Binds the validate transform to `<p>.raw` → `<p>.validated` (+ dead letters),
 * with the pipeline's payload rules, its event-time bounds, and the duplicate
 * check whose changelog is `<p>.validate-dedup` (dedup.ts, changelog.ts).
 *
 * Exactly-once for the duplicate check: each chunk's changelog entries go in
 * the chunk's transaction, with its outputs and its offset. The in-memory
 * state runs ahead of what is committed while a transaction is in flight; if
 * the runtime throws that work away (a rewind after an aborted transaction, a
 * rebalance), the partition's epoch changes and the next chunk first reloads
 * the state from the changelog, read-committed: a redelivered event is never
 * taken for a duplicate of its own aborted copy.
 */
import { topicPartitions } from '../../connectors/kafka/admin.ts';
import { type Emit, type Outcome, topicName } from '../../lib/contracts.ts';
import { SluiceError } from '../../lib/errors.ts';
import type { StageModule } from '../runtime/runtime.ts';
import type { StageInput } from '../runtime/stage.ts';
import type { DedupEntry } from './changelog.ts';
import { VALIDATE_DEFAULTS, validateConfigSchema, validateConnectionsSchema } from './config.ts';
import { DedupState } from './dedup.ts';
import { type ChangelogReader, openChangelogReader } from './restore.ts';
import { type ValidateContext, validateRecord } from './transform.ts';

export const validateStage: StageModule<{ validate: typeof validateConfigSchema; changelogKafka: typeof validateConnectionsSchema }> = {
  name: 'validate',
  input: 'raw',
  outputs: ['validated', 'validate-dedup'],
  settings: () => ({ validate: validateConfigSchema, changelogKafka: validateConnectionsSchema }),
  factory:
    (settings) =>
    async ({ pipeline, catalog, metrics, now, logger, partitionEpoch }) => {
      const bounds = pipeline.plugin.ingest ?? {};
      const ctx: ValidateContext = {
        pipeline: pipeline.name,
        eventTypes: pipeline.plugin.eventTypes,
        maxMessageBytes: settings.validate.SLUICE_MAX_MESSAGE_BYTES ?? pipeline.plugin.maxMessageBytes,
        parsePayload: pipeline.plugin.payload,
        decodeFramed: (value) => catalog.decodeSync(value),
        now,
        latenessMs: bounds.latenessMs,
        clockSkewMs: bounds.clockSkewMs,
      };
      const dedup = new DedupState({ windowMs: bounds.dedupWindowMs ?? VALIDATE_DEFAULTS.dedupWindowMs, maxIds: settings.validate.SLUICE_DEDUP_MAX_IDS });
      const changelogTopic = topicName(pipeline.name, 'validate-dedup');

      // The runtime (not the broker-free driver) says when a partition's state must be reloaded from the changelog.
      let reader: ChangelogReader | undefined;
      if (partitionEpoch !== undefined) {
        const brokers = settings.changelogKafka.KAFKA_BROKERS;
        const [raw, changelog] = await Promise.all([topicPartitions(brokers, topicName(pipeline.name, 'raw')), topicPartitions(brokers, changelogTopic)]);
        if (raw !== changelog) {
          // Entries go to the raw record's partition number: with fewer changelog partitions they could not be written.
          throw new SluiceError(
            'CONFIG_INVALID',
            `${changelogTopic} has ${changelog} partitions and ${topicName(pipeline.name, 'raw')} has ${raw}: they must match. Add partitions to ${changelogTopic} (kafka-topics --alter --partitions ${raw}).`,
          );
        }
        reader = openChangelogReader({
          brokers,
          topic: changelogTopic,
          clientId: `sluice.${pipeline.name}.validate.restore`,
          codec: catalog,
          logger,
          timeoutMs: VALIDATE_DEFAULTS.dedupRestoreTimeoutMs,
        });
      }
      /** Per partition: the epoch whose changelog the state was restored from. */
      const restoredAt = new Map<number, number>();

      async function restoreIfStale(partition: number): Promise<void> {
        if (reader === undefined || partitionEpoch === undefined) return;
        const epoch = partitionEpoch(partition);
        if (restoredAt.get(partition) === epoch) return;
        const startedAt = performance.now();
        const entries = await reader.restore(partition);
        dedup.restore(partition, entries, now());
        restoredAt.set(partition, epoch);
        metrics.dedupRestores.inc();
        metrics.dedupIds.set(dedup.size);
        logger.info({ partition, entries: entries.length, held: dedup.size, ms: Math.round(performance.now() - startedAt) }, 'duplicate check restored from the changelog');
      }

      return {
        input: 'raw',
        inputFormat: 'bytes',
        outputs: ['validated', 'validate-dedup'],
        process: async (inputs: Array<StageInput<Buffer>>) => {
          // The runtime hands a stage one partition's records per chunk; a replay may mix them.
          const partitions: number[] = [];
          for (const { source } of inputs) if (!partitions.includes(source.partition)) partitions.push(source.partition);
          for (const partition of partitions) await restoreIfStale(partition);
          const nowMs = now();
          /** Per partition, the ids this chunk validated first: recorded only once the whole chunk is handled. */
          const first = new Map(partitions.map((partition) => [partition, new Map<string, number>()]));
          let duplicates = 0;
          let droppedFields = 0;
          const outcomes: Outcome[] = new Array(inputs.length);
          for (let i = 0; i < inputs.length; i++) {
            const source = inputs[i]!.source;
            const outcome = validateRecord(source, ctx);
            if (outcome.kind !== 'emit') {
              outcomes[i] = outcome;
              continue;
            }
            const validated = outcome.outputs[0]!;
            const record = validated.value;
            const id = record.event_id;
            const partition = source.partition;
            const firstHere = first.get(partition)!;
            const firstAt = firstHere.get(id) ?? dedup.seenAt(partition, id, nowMs);
            const entry: DedupEntry = {
              event_id: id,
              first_validated_at: firstAt ?? record.validated_at,
              validated_at: record.validated_at,
              occurred_at: record.occurred_at,
              duplicate: firstAt !== undefined,
              source_offset: Number(source.offset),
            };
            const changelog = { to: 'validate-dedup' as const, value: entry, key: Buffer.from(id, 'utf8'), partition };
            if (firstAt !== undefined) {
              duplicates++;
              // Dropped: nothing goes on; the changelog entry records the drop (ClickHouse stage_events, outcome duplicate).
              outcomes[i] = { kind: 'emit', eventId: id, outputs: [changelog] } satisfies Emit;
              continue;
            }
            firstHere.set(id, record.validated_at);
            droppedFields += record.dropped_fields.length;
            if (record.timeliness !== null) metrics.untimelyEvents.inc({ timeliness: record.timeliness });
            outcomes[i] = { kind: 'emit', eventId: id, outputs: [validated, changelog] } satisfies Emit;
          }
          const evictedBefore = dedup.evicted;
          for (const [partition, ids] of first) dedup.record(partition, ids, nowMs);
          if (dedup.evicted > evictedBefore) metrics.dedupEvicted.inc(dedup.evicted - evictedBefore);
          if (duplicates > 0) metrics.duplicates.inc(duplicates);
          if (droppedFields > 0) metrics.droppedFields.inc(droppedFields);
          metrics.dedupIds.set(dedup.size);
          return outcomes;
        },
        close: async () => {
          await reader?.close();
        },
      };
    },
};
