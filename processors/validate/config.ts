/** Configuration of the validate stage, from the environment, parsed once at start. */
import { z } from 'zod';
import { parseEnv } from '../../lib/settings.ts';

export const VALIDATE_DEFAULTS = {
  /** A signup event is well under 1 KiB; anything over 256 KiB is dead-lettered as OVERSIZED (below the broker's 1 MiB message limit, so the dead letter itself fits). */
  maxMessageBytes: 262_144,
} as const;

export interface ValidateConfig {
  maxMessageBytes: number;
}

/** Digits only: an empty or malformed variable is an error, never a silent 0 or NaN. */
const positiveInteger = z
  .string()
  .trim()
  .regex(/^\d+$/, 'expected a positive integer')
  .transform(Number)
  .pipe(z.number().int().positive().max(Number.MAX_SAFE_INTEGER));

export const validateConfigSchema = z.object({
  SLUICE_MAX_MESSAGE_BYTES: positiveInteger.default(VALIDATE_DEFAULTS.maxMessageBytes),
});

export function validateConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ValidateConfig {
  const parsed = parseEnv(validateConfigSchema, env);
  return { maxMessageBytes: parsed.SLUICE_MAX_MESSAGE_BYTES };
}
