/** Configuration of the validate stage, parsed with the process's other settings. */
import { z } from 'zod';
import { integerVar } from '../../lib/settings.ts';

export const validateConfigSchema = z.object({
  /** Overrides the pipeline's own limit (its plugin's maxMessageBytes); keep it below the broker's message limit so the dead letter fits. */
  SLUICE_MAX_MESSAGE_BYTES: integerVar(1, 900_000).optional(),
});

export type ValidateConfig = z.output<typeof validateConfigSchema>;
