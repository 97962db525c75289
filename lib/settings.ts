/**
 * Configuration from the environment: one strict schema per process, parsed
 * once before any I/O, every bad variable listed in one CONFIG_INVALID.
 */
import { z } from 'zod';
import { SluiceError } from './errors.ts';

/** Where the real services are. Defaults are the local stack (deploy/local). */
export const CONNECTION_DEFAULTS = {
  KAFKA_BROKERS: '127.0.0.1:9092',
  SCHEMA_REGISTRY_URL: 'http://127.0.0.1:8081/apis/ccompat/v7',
  CLICKHOUSE_URL: 'http://127.0.0.1:8123',
} as const;

/**
 * A whole number in [min, max], written in digits (underscores allowed): an
 * empty or malformed variable is an error, never a silent 0 or NaN.
 */
export const integerVar = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^-?\d[\d_]*$/, 'expected a whole number')
    .transform((text) => Number(text.replaceAll('_', '')))
    .pipe(z.number().int().min(min).max(max));

/** A decimal in [0, 1] (`0.85`, `1`, `.5`): an empty variable is an error, never a silent 0. */
export const probabilityVar = () =>
  z
    .string()
    .trim()
    .regex(/^(?:0|1)(?:\.\d+)?$|^\.\d+$/, 'expected a decimal between 0 and 1')
    .transform(Number)
    .pipe(z.number().min(0).max(1));

/** An http(s) URL; `registry:8081` and other schemes are refused. */
export const httpUrlVar = () =>
  z
    .string()
    .trim()
    .pipe(z.url({ protocol: /^https?$/, message: 'expected an http:// or https:// URL' }));

const brokerList = z
  .string()
  .transform((value) => value.split(',').map((broker) => broker.trim()).filter(Boolean))
  .pipe(
    z
      .array(
        z
          .string()
          .regex(/^[^:\s/]+:\d{1,5}$/, 'expected host:port, comma-separated')
          .refine((broker) => Number(broker.split(':')[1]) >= 1 && Number(broker.split(':')[1]) <= 65_535, 'port must be 1 to 65535'),
      )
      .min(1, 'expected at least one host:port'),
  );

export const connectionSchema = z.object({
  KAFKA_BROKERS: brokerList.default([CONNECTION_DEFAULTS.KAFKA_BROKERS]),
  SCHEMA_REGISTRY_URL: httpUrlVar().default(CONNECTION_DEFAULTS.SCHEMA_REGISTRY_URL),
  CLICKHOUSE_URL: httpUrlVar().default(CONNECTION_DEFAULTS.CLICKHOUSE_URL),
});

export type Connections = {
  kafkaBrokers: string[];
  schemaRegistryUrl: string;
  clickhouseUrl: string;
};

/**
 * Parses several schemas against one environment, listing every bad variable
 * of all of them in one CONFIG_INVALID (one line: a log line or a terminal
 * line) rather than failing on the first. Variables set to the empty string
 * count as unset only where the schema has a default.
 */
export function parseEnvSchemas<S extends Record<string, z.ZodType>>(schemas: S, env: NodeJS.ProcessEnv = process.env): { [K in keyof S]: z.output<S[K]> } {
  const problems = new Set<string>();
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(schemas)) {
    const result = schema.safeParse(env);
    if (result.success) out[name] = result.data;
    else for (const issue of result.error.issues) problems.add(`${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  if (problems.size > 0) {
    throw new SluiceError('CONFIG_INVALID', `Invalid configuration; fix ${problems.size === 1 ? 'this environment variable' : 'these environment variables'}: ${[...problems].join('; ')}`);
  }
  return out as { [K in keyof S]: z.output<S[K]> };
}

/** One schema against the environment (see parseEnvSchemas). */
export const parseEnv = <T extends z.ZodType>(schema: T, env: NodeJS.ProcessEnv = process.env): z.output<T> => parseEnvSchemas({ value: schema }, env).value;

/** The connections a parse of connectionSchema describes. */
export function connectionsOf(parsed: z.output<typeof connectionSchema>): Connections {
  return {
    kafkaBrokers: parsed.KAFKA_BROKERS,
    schemaRegistryUrl: parsed.SCHEMA_REGISTRY_URL.replace(/\/+$/, ''),
    clickhouseUrl: parsed.CLICKHOUSE_URL,
  };
}

export const connectionsFromEnv = (env: NodeJS.ProcessEnv = process.env): Connections => connectionsOf(parseEnv(connectionSchema, env));
