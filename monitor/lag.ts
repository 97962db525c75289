/**
 * Consumer-group lag of a pipeline's stages, read from Kafka's admin API when
 * a window is judged: records on each stage's input topic that its group has
 * not committed yet (a partition with no commit counts from offset 0). Lag is
 * a now-value, so a backfill (`--once --at`) does not measure it.
 */
import { checkTopics, groupLag } from '../connectors/kafka/admin.ts';
import { type TopicSuffix, topicName } from '../lib/contracts.ts';
import { isSluiceError } from '../lib/errors.ts';
import type { ControlState } from '../processors/runtime/control.ts';
import { currentMode, groupIdOf } from '../processors/runtime/modes.ts';

const INPUTS = {
  independent: [
    ['validate', 'raw'],
    ['score', 'validated'],
    ['decide', 'scored'],
  ],
  colocated: [['all', 'raw']],
} as const satisfies Record<string, ReadonlyArray<readonly [string, TopicSuffix]>>;

/** Lag per stage (or `all`, co-located), or null when the pipeline's topics do not exist. */
export async function measureLag(brokers: string[], pipeline: string, control: ControlState): Promise<Map<string, number> | null> {
  const stages = INPUTS[currentMode(control, pipeline)];
  const topics = stages.map(([, suffix]) => topicName(pipeline, suffix));
  try {
    await checkTopics(brokers, topics, { deadlineMs: 5_000, fix: `npx sluice topics create --pipeline ${pipeline}` });
  } catch (error) {
    if (isSluiceError(error, 'TOPIC_MISSING')) return null;
    throw error;
  }
  const lags = new Map<string, number>();
  for (const [stage, suffix] of stages) {
    const partitions = await groupLag(brokers, groupIdOf(pipeline, stage), topicName(pipeline, suffix));
    lags.set(stage, partitions.reduce((n, p) => n + Math.max(0, Number(p.end - (p.committed < 0n ? 0n : p.committed))), 0));
  }
  return lags;
}
