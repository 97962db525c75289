/**
 * The changelog of validate's duplicate check: `<p>.validate-dedup`, as Kafka
 * Streams keeps a state store's changelog. Every validated (or dropped
 * duplicate) record writes one entry, keyed by event_id, to the partition
 * number of its raw record, in the same transaction as its output and its
 * input offset: the changelog holds exactly what was committed. Pure: the
 * contract, its reading, and the sink's row; restore.ts reads it from Kafka.
 *
 * A restore's marker (restore.ts) has a fixed key (compaction keeps one per
 * partition) and a null value; restore, the sink and any reader skip it.
 */
import { join } from 'node:path';
import type { StageEventRow } from '../../connectors/clickhouse/schema.ts';
import type { FramedDecode } from '../../lib/codec.ts';
import type { SourceRecord } from '../../lib/contracts.ts';
import { readAvsc } from '../../lib/schemas.ts';

/** The changelog's value contract, registered as `<p>.validate-dedup-value` by `sluice schemas register`. */
export const changelogSchema = (): Record<string, unknown> => readAvsc(join(import.meta.dirname, 'changelog.avsc'));

/** One changelog value (changelog.avsc). Times are epoch ms. */
export interface DedupEntry {
  event_id: string;
  first_validated_at: number;
  validated_at: number;
  occurred_at: number;
  duplicate: boolean;
  source_offset: number;
}

export const MARKER_KEY = '\u0000sluice.validate-dedup.marker';
export const MARKER_HEADER = 'sluice.dedup.marker';

const timeOf = (value: unknown): number => (value instanceof Date ? value.getTime() : Number(value));

/** A changelog value as an entry, or undefined when it is not one. */
export function readEntry(decoded: FramedDecode): DedupEntry | undefined {
  if (decoded.kind !== 'decoded' || decoded.value === null || typeof decoded.value !== 'object') return undefined;
  const value = decoded.value as Record<string, unknown>;
  const entry = {
    event_id: value['event_id'],
    first_validated_at: timeOf(value['first_validated_at']),
    validated_at: timeOf(value['validated_at']),
    occurred_at: timeOf(value['occurred_at']),
    duplicate: value['duplicate'] === true,
    source_offset: Number(value['source_offset']),
  };
  if (typeof entry.event_id !== 'string' || !Number.isFinite(entry.first_validated_at)) return undefined;
  return entry as DedupEntry;
}

/**
 * The stage event (ClickHouse `stage_events`, outcome `duplicate`) of a
 * changelog record that says a copy was dropped; null for the entries of
 * validated events (their `passed` row comes from `<p>.validated`) and for
 * markers. For the ClickHouse sink.
 */
export function duplicateStageEvent(pipeline: string, source: SourceRecord, decode: (value: Buffer) => FramedDecode): StageEventRow | null {
  if (source.value === null || source.value.length === 0) return null;
  const entry = readEntry(decode(source.value));
  if (entry === undefined || !entry.duplicate) return null;
  const positive = (ms: number) => (Number.isFinite(ms) && ms > 0 ? Math.trunc(ms) : 0);
  return {
    pipeline,
    stage: 'validate',
    outcome: 'duplicate',
    detail: `first validated at ${new Date(entry.first_validated_at).toISOString()}`,
    event_id: entry.event_id,
    decision_version: 0,
    occurred_at_ms: positive(entry.occurred_at) || positive(entry.validated_at),
    stage_at_ms: positive(entry.validated_at),
    kafka_topic: source.topic,
    kafka_partition: source.partition,
    kafka_offset: Number(source.offset),
    kafka_timestamp_ms: positive(source.timestampMs),
  };
}

/**
 * The changelog topic's configuration: compacted (the latest entry per event
 * id) and deleted past the window, as Kafka Streams keeps a windowed store's
 * changelog; restore() skips what the window has passed but deletion has not
 * reached yet (it drops whole segments).
 */
export function changelogTopicConfig(windowMs: number): Record<string, string> {
  return { 'cleanup.policy': 'compact,delete', 'retention.ms': String(windowMs), 'segment.ms': String(Math.min(windowMs, 86_400_000)) };
}
