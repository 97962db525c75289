/** The review service's own topics, beside each pipeline's `<p>.review`, `<p>.decided` and `<p>.feedback`. */
import type { TopicSpec } from '../connectors/kafka/admin.ts';

const DAY_MS = 86_400_000;

/** `<p>.review-state`: every action on the pipeline's review items, in one partition (one order for every instance). */
export const stateTopicOf = (pipeline: string): string => `${pipeline}.review-state`;

/**
 * Not compacted: whether a claim won depends on every record before it, so
 * the log is kept whole, for longer than `<p>.review` keeps the items it acts
 * on (SLUICE_RETENTION_DAYS, 7 by default, plus a day).
 */
export function stateTopicSpec(pipeline: string, retentionDays = 8, replicationFactor = 1): TopicSpec {
  const durability: Record<string, string> = replicationFactor >= 3 ? { 'min.insync.replicas': '2' } : {};
  return { topic: stateTopicOf(pipeline), partitions: 1, replicationFactor, config: { ...durability, 'cleanup.policy': 'delete', 'retention.ms': String(retentionDays * DAY_MS) } };
}

/** Accounts (keyed by user name) and sessions (keyed by the token's hash): compacted, the latest record per key stands. */
export function compactedTopicSpec(topic: string, replicationFactor = 1): TopicSpec {
  const durability: Record<string, string> = replicationFactor >= 3 ? { 'min.insync.replicas': '2' } : {};
  return { topic, partitions: 1, replicationFactor, config: { ...durability, 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '0', 'segment.ms': String(DAY_MS) } };
}
