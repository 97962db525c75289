/**
 * A pipeline instance runs in one mode at a time, recorded on the control
 * topic: `independent` (the default: validate, score and decide as their own
 * processes) or `colocated` (`sluice run all`: the three in one process, one
 * transaction per chunk). Both at once would decide every event twice, so a
 * process refuses to start in the mode the pipeline is not in.
 *
 * Switching is an operator's step with every process stopped, like
 * `kafka-consumer-groups --reset-offsets`: `sluice mode set` moves each
 * group's position so the new mode continues exactly where the old one
 * stopped (nothing skipped, nothing decided again), then records the mode.
 */
import { openAdmin, type AdminSession, type TopicPartitionOffset } from '../../connectors/kafka/admin.ts';
import { openTransactionalProducer } from '../../connectors/kafka/tx.ts';
import type { SchemaCatalog } from '../../connectors/registry/registry.ts';
import { type TopicSuffix, topicName } from '../../lib/contracts.ts';
import { SluiceError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { type ControlState, followControl, writeControl } from './control.ts';
import type { ProcessName } from './stage.ts';

export const PIPELINE_MODE = 'pipeline.mode';
export const PIPELINE_MODES = ['independent', 'colocated'] as const;
export type PipelineMode = (typeof PIPELINE_MODES)[number];

const INPUT: Record<ProcessName, TopicSuffix> = { validate: 'raw', score: 'validated', decide: 'scored', all: 'raw' };
const PROCESSES: Record<PipelineMode, readonly ProcessName[]> = { independent: ['validate', 'score', 'decide'], colocated: ['all'] };
/** Group states in which the group has (or is gaining) members. */
const ACTIVE = new Set(['Stable', 'PreparingRebalance', 'CompletingRebalance']);

export const groupIdOf = (pipeline: string, name: ProcessName) => `sluice.${pipeline}.${name}`;
export const modeOfProcess = (name: ProcessName): PipelineMode => (name === 'all' ? 'colocated' : 'independent');
export const currentMode = (control: ControlState, pipeline: string): PipelineMode =>
  control.get(pipeline, PIPELINE_MODE)?.value === 'colocated' ? 'colocated' : 'independent';

/** Throws MODE_CONFLICT when `name` does not belong to the pipeline's recorded mode. */
export function checkMode(control: ControlState, pipeline: string, name: ProcessName): void {
  const mode = currentMode(control, pipeline);
  if (mode === modeOfProcess(name)) return;
  const wanted = modeOfProcess(name);
  throw new SluiceError(
    'MODE_CONFLICT',
    `Pipeline ${pipeline} runs ${mode}, so \`sluice run ${name}\` would decide its events a second time. ` +
      `To switch: stop its ${mode} processes, run \`sluice mode set ${wanted} --pipeline ${pipeline}\`, then start this one.`,
  );
}

/** Records the group has yet to read on `topic`; a caught-up transactional reader trails the end by the last commit marker. */
async function backlog(admin: AdminSession, groupId: string, topic: string): Promise<number> {
  const [ends, committed] = await Promise.all([admin.partitionWatermarks(topic), admin.committedOffsets(groupId, [topic])]);
  let records = 0;
  for (const end of ends) {
    const offset = BigInt(committed.find((c) => c.partition === end.partition)?.offset ?? '-1');
    const behind = BigInt(end.high) - 1n - (offset < 0n ? BigInt(end.low) : offset);
    if (behind > 0n) records += Number(behind);
  }
  return records;
}

/** Per partition, the further of two groups' positions (the modes never run at once: the further one is the latest). */
function furthest(a: readonly TopicPartitionOffset[], b: readonly TopicPartitionOffset[]): TopicPartitionOffset[] {
  return a
    .map((mine) => {
      const theirs = b.find((o) => o.partition === mine.partition)?.offset ?? '-1';
      return BigInt(theirs) > BigInt(mine.offset) ? { ...mine, offset: theirs } : mine;
    })
    .filter((o) => o.offset !== '-1');
}

export interface ModeSwitch {
  from: PipelineMode;
  to: PipelineMode;
  /** The positions set, by group. */
  positions: Record<string, TopicPartitionOffset[]>;
}

export async function switchMode(options: {
  brokers: string[];
  catalog: SchemaCatalog;
  pipeline: string;
  to: PipelineMode;
  reason: string | null;
  updatedBy: string;
  logger: Logger;
}): Promise<ModeSwitch> {
  const { brokers, pipeline, to } = options;
  const { state, follower } = await followControl({ brokers, catalog: options.catalog, clientId: `sluice.${pipeline}.mode`, logger: options.logger });
  const from = currentMode(state, pipeline);
  await follower.stop();
  const positions: Record<string, TopicPartitionOffset[]> = {};
  if (from === to) return { from, to, positions };

  const admin = await openAdmin(brokers, `sluice.${pipeline}.mode`);
  try {
    const running: string[] = [];
    for (const name of [...PROCESSES.independent, ...PROCESSES.colocated]) {
      const group = groupIdOf(pipeline, name);
      const state = await admin.groupState(group);
      if (state !== undefined && ACTIVE.has(state)) running.push(name);
    }
    if (running.length > 0) {
      throw new SluiceError('MODE_CONFLICT', `Pipeline ${pipeline} still has running processes (${running.join(', ')}). Stop them, then switch.`);
    }
    const raw = topicName(pipeline, 'raw');
    const [validateAt, colocatedAt] = await Promise.all([
      admin.committedOffsets(groupIdOf(pipeline, 'validate'), [raw]),
      admin.committedOffsets(groupIdOf(pipeline, 'all'), [raw]),
    ]);
    if (to === 'colocated') {
      for (const stage of ['score', 'decide'] as const) {
        const left = await backlog(admin, groupIdOf(pipeline, stage), topicName(pipeline, INPUT[stage]));
        if (left > 0) {
          throw new SluiceError(
            'MODE_CONFLICT',
            `Pipeline ${pipeline}: ${stage} still has ${left} records to process on ${topicName(pipeline, INPUT[stage])}; they would never be decided. Run the independent stages until they catch up, stop them, then switch.`,
          );
        }
      }
      positions[groupIdOf(pipeline, 'all')] = furthest(colocatedAt, validateAt);
    } else {
      positions[groupIdOf(pipeline, 'validate')] = furthest(validateAt, colocatedAt);
      // Co-located mode scored and decided everything it wrote: score and decide start after it.
      for (const stage of ['score', 'decide'] as const) {
        const input = topicName(pipeline, INPUT[stage]);
        positions[groupIdOf(pipeline, stage)] = (await admin.partitionWatermarks(input)).map((end) => ({ topic: input, partition: end.partition, offset: end.high }));
      }
    }
  } finally {
    await admin.close();
  }
  // Every group's new position in one transaction: all of them or none.
  const producer = await openTransactionalProducer({ brokers, clientId: `sluice.${pipeline}.mode`, transactionalId: `sluice.${pipeline}.mode` });
  try {
    const transaction = await producer.begin();
    try {
      for (const [group, offsets] of Object.entries(positions)) if (offsets.length > 0) await transaction.sendOffsets(group, offsets);
      await transaction.commit();
    } catch (error) {
      await transaction.abort().catch(() => {});
      throw error;
    }
  } finally {
    await producer.close();
  }
  await writeControl({ brokers, catalog: options.catalog, setting: { pipeline, setting: PIPELINE_MODE, value: to, reason: options.reason, updated_by: options.updatedBy } });
  return { from, to, positions };
}
