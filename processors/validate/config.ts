/** Configuration of the validate stage, parsed with the process's other settings. */
import { z } from 'zod';
import { connectionSchema, integerVar } from '../../lib/settings.ts';

export const VALIDATE_DEFAULTS = {
  /** A pipeline whose manifest sets no `ingest.dedupWindowMs` drops an event_id validated this recently. */
  dedupWindowMs: 86_400_000, // 24 h
  /**
   * Event ids the duplicate check keeps in memory, all partitions of the process: about 90 MB at
   * ~180 bytes per 36-character id (docs/ingest.md). Past it the oldest go first (sluice_dedup_evicted_total),
   * which shortens the window in effect: size it as events per second × window seconds per instance.
   */
  dedupMaxIds: 500_000,
  /** A changelog restore (after a restart, rebalance or rewind) that has not finished by then fails the chunk, which is retried. */
  dedupRestoreTimeoutMs: 30_000,
} as const;

export const validateConfigSchema = z.object({
  /** Overrides the pipeline's own limit (its plugin's maxMessageBytes); keep it below the broker's message limit so the dead letter fits. */
  SLUICE_MAX_MESSAGE_BYTES: integerVar(1, 900_000).optional(),
  SLUICE_DEDUP_MAX_IDS: integerVar(1_000, 100_000_000).default(VALIDATE_DEFAULTS.dedupMaxIds),
});

export type ValidateConfig = z.output<typeof validateConfigSchema>;

/** The brokers, for the duplicate check's changelog restore (the same variables every process reads). */
export { connectionSchema as validateConnectionsSchema };
