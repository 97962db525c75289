/** The model store a process uses, from its environment (docs/models.md lists the variables). */
import { z } from 'zod';
import { httpUrlVar, parseEnv } from '../../lib/settings.ts';
import { LocalModelStore } from './local.ts';
import { S3ModelStore } from './s3.ts';
import { MODELS_ROOT, type ModelStore } from './store.ts';

export const modelStoreSchema = z.object({
  SLUICE_MODEL_STORE: z.enum(['local', 's3']).default('local'),
  SLUICE_MODELS_DIR: z.string().trim().min(1).optional(),
  SLUICE_MODEL_S3_ENDPOINT: httpUrlVar().optional(),
  SLUICE_MODEL_S3_BUCKET: z.string().trim().min(3).optional(),
  SLUICE_MODEL_S3_PREFIX: z.string().trim().default('models/'),
  SLUICE_MODEL_S3_REGION: z.string().trim().min(1).default('us-east-1'),
  AWS_ACCESS_KEY_ID: z.string().trim().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  AWS_SESSION_TOKEN: z.string().min(1).optional(),
}).superRefine((env, ctx) => {
  if (env.SLUICE_MODEL_STORE !== 's3') return;
  for (const name of ['SLUICE_MODEL_S3_ENDPOINT', 'SLUICE_MODEL_S3_BUCKET', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const) {
    if (env[name] === undefined) ctx.addIssue({ code: 'custom', path: [name], message: 'required when SLUICE_MODEL_STORE=s3' });
  }
});

/** The model store the environment configures (CONFIG_INVALID lists every bad variable). */


/** The model store the environment configures (CONFIG_INVALID lists every bad variable). */
export const modelStoreFromEnv = (env: NodeJS.ProcessEnv = process.env): ModelStore => modelStoreOf(parseEnv(modelStoreSchema, env));

/** The model store of already parsed settings (a stage parses every setting together, before any I/O). */
export function modelStoreOf(config: z.output<typeof modelStoreSchema>): ModelStore {
  if (config.SLUICE_MODEL_STORE === 'local') return new LocalModelStore(config.SLUICE_MODELS_DIR ?? MODELS_ROOT);
  return new S3ModelStore({
    endpoint: config.SLUICE_MODEL_S3_ENDPOINT!,
    bucket: config.SLUICE_MODEL_S3_BUCKET!,
    prefix: config.SLUICE_MODEL_S3_PREFIX,
    region: config.SLUICE_MODEL_S3_REGION,
    credentials: { accessKeyId: config.AWS_ACCESS_KEY_ID!, secretAccessKey: config.AWS_SECRET_ACCESS_KEY!, sessionToken: config.AWS_SESSION_TOKEN },
  });
}
