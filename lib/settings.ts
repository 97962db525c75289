import { z } from 'zod';
import { SluiceError } from './errors.ts';

/** Where the real services are. Defaults are the local stack (deploy/local). */
export const CONNECTION_DEFAULTS = {
  KAFKA_BROKERS: '127.0.0.1:9092',
  SCHEMA_REGISTRY_URL: 'http://127.0.0.1:8081/apis/ccompat/v7',
  CLICKHOUSE_URL: 'http://127.0.0.1:8123',
} as const;

const connectionSchema = z.object({
  KAFKA_BROKERS: z
    .string()
    .default(CONNECTION_DEFAULTS.KAFKA_BROKERS)
    .transform((value) => value.split(',').map((broker) => broker.trim()).filter(Boolean))
    .pipe(z.array(z.string().regex(/^[^:\s]+:\d+$/, 'expected host:port')).min(1)),
  SCHEMA_REGISTRY_URL: z.url().default(CONNECTION_DEFAULTS.SCHEMA_REGISTRY_URL),
  CLICKHOUSE_URL: z.url().default(CONNECTION_DEFAULTS.CLICKHOUSE_URL),
});

export type Connections = {
  kafkaBrokers: string[];
  schemaRegistryUrl: string;
  clickhouseUrl: string;
};

/**
 * Parses a zod schema against the environment once, listing every bad variable
 * in one error rather than failing on the first.
 */
export function parseEnv<T extends z.ZodType>(schema: T, env: NodeJS.ProcessEnv = process.env): z.output<T> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  throw new SluiceError('CONFIG_INVALID', `Invalid configuration; fix these environment variables:\n${problems.join('\n')}`);
}

export function connectionsFromEnv(env: NodeJS.ProcessEnv = process.env): Connections {
  const parsed = parseEnv(connectionSchema, env);
  return {
    kafkaBrokers: parsed.KAFKA_BROKERS,
    schemaRegistryUrl: parsed.SCHEMA_REGISTRY_URL.replace(/\/+$/, ''),
    clickhouseUrl: parsed.CLICKHOUSE_URL,
  };
}
