/**
 * `sluice ingest …`: the HTTP ingest API (serve) and its API keys (add-key,
 * revoke-key, list-keys). Keys live hashed on a compacted topic that every
 * gateway instance follows; a key is printed once, when it is created.
 */
import type { Command } from 'commander';
import { ensureTopics, openProducer } from '../connectors/kafka/admin.ts';
import { followTopic } from '../connectors/kafka/follow.ts';
import { SluiceError } from '../lib/errors.ts';
import { createCommandLogger } from '../lib/log.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { INGEST_DEFAULTS, type IngestConfig, ingestConfigFromEnv } from '../ingest/config.ts';
import { encodeKeyRecord, type KeyRecord, KeyRing, keyIdOf, newApiKey } from '../ingest/keys.ts';
import { ingestTopics, serveIngest } from '../ingest/server.ts';

const positiveNumber = (name: string, text: string): number => {
  const value = Number(text.replaceAll('_', ''));
  if (!Number.isFinite(value) || value <= 0 || value > 1_000_000) throw new SluiceError('CONFIG_INVALID', `${name} must be a number of events per second from 1 to 1000000, got ${JSON.stringify(text)}.`);
  return value;
};

/** Reads the keys topic to its end: the keys in force. */
async function readKeys(config: IngestConfig): Promise<KeyRing> {
  const ring = new KeyRing();
  const follower = await followTopic({
    brokers: config.connections.kafkaBrokers,
    topic: config.keysTopic,
    clientId: 'sluice-ingest-cli',
    logger: createCommandLogger({ component: 'ingest-cli' }, 'error'),
    onMessage: (message) => {
      if (message.key !== null) ring.apply(message.key, message.value);
    },
  });
  try {
    await follower.caughtUp;
  } finally {
    await follower.stop();
  }
  return ring;
}

/** Writes one record (or tombstone) to the keys topic, acknowledged by every in-sync replica. */
export async function writeKeyRecord(config: IngestConfig, keyId: string, record: KeyRecord | null): Promise<void> {
  const brokers = config.connections.kafkaBrokers;
  await ensureTopics(brokers, ingestTopics(config, config.replicationFactor));
  const producer = await openProducer(brokers, 'sluice-ingest-cli');
  try {
    await producer.send(config.keysTopic, [{ key: keyId, value: record === null ? null : encodeKeyRecord(record) }]);
  } finally {
    await producer.close();
  }
}

/** Creates a key for `pipeline` and stores its hash; returns the key (shown once) and its record. */
export async function addIngestKey(config: IngestConfig, pipeline: string, ratePerSecond: number = INGEST_DEFAULTS.defaultRatePerSecond) {
  const name = pipelineByName(pipeline).name;
  const created = newApiKey(name, ratePerSecond, process.env.USER ?? 'sluice-cli');
  await writeKeyRecord(config, created.record.key_id, created.record);
  return created;
}

export async function revokeIngestKey(config: IngestConfig, keyIdOrKey: string): Promise<KeyRecord> {
  const keyId = keyIdOf(keyIdOrKey) ?? keyIdOrKey;
  const record = (await readKeys(config)).list().find((k) => k.key_id === keyId);
  if (!record) throw new SluiceError('CONFIG_INVALID', `No key with id ${JSON.stringify(keyId)} is in force; see: sluice ingest list-keys`);
  await writeKeyRecord(config, keyId, null);
  return record;
}

export function registerIngestCommands(program: Command): void {
  const ingest = program.command('ingest').description('the HTTP ingest API: events and document uploads over HTTP, and its API keys');

  ingest
    .command('serve')
    .description('serve the ingest API until SIGTERM or SIGINT (settings: SLUICE_INGEST_* variables, see docs/ingest.md)')
    .option('--port <port>', `port to listen on (default ${INGEST_DEFAULTS.port}, or SLUICE_INGEST_PORT)`)
    .action(async (options: { port?: string }) => {
      const port = options.port === undefined ? undefined : Number(options.port);
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65_535)) throw new SluiceError('CONFIG_INVALID', `--port must be 0 to 65535, got ${options.port}.`);
      const config = ingestConfigFromEnv(process.env, port === undefined ? {} : { port });
      const running = await serveIngest({ config, handleSignals: true });
      await running.done;
    });

  ingest
    .command('add-key')
    .description('create an API key for a pipeline and print it (once; only its hash is stored)')
    .requiredOption('--pipeline <name>', 'pipeline the key may send to')
    .option('--rate <events-per-second>', `events per second this key may send, per gateway instance (default ${INGEST_DEFAULTS.defaultRatePerSecond})`)
    .option('--json', 'print JSON')
    .action(async (options: { pipeline: string; rate?: string; json?: boolean }) => {
      const rate = options.rate === undefined ? INGEST_DEFAULTS.defaultRatePerSecond : positiveNumber('--rate', options.rate);
      const { key, record } = await addIngestKey(ingestConfigFromEnv(), options.pipeline, rate);
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ key, key_id: record.key_id, pipeline: record.pipeline, rate_per_second: record.rate_per_second })}\n`);
      } else {
        process.stdout.write(`${key}\n`);
        process.stderr.write(`key id ${record.key_id} for pipeline ${record.pipeline}, ${record.rate_per_second} events/s. Store the key now: it is not shown again.\n`);
      }
    });

  ingest
    .command('revoke-key')
    .description('revoke an API key; every gateway instance refuses it within seconds')
    .argument('<key-id-or-key>', 'the key id (from list-keys) or the key itself')
    .action(async (keyIdOrKey: string) => {
      const record = await revokeIngestKey(ingestConfigFromEnv(), keyIdOrKey);
      process.stdout.write(`revoked ${record.key_id} (pipeline ${record.pipeline})\n`);
    });

  ingest
    .command('list-keys')
    .description('the API keys in force (ids, pipelines, rates; never the keys)')
    .option('--pipeline <name>', 'only the keys of this pipeline')
    .option('--json', 'print JSON lines')
    .action(async (options: { pipeline?: string; json?: boolean }) => {
      const keys = (await readKeys(ingestConfigFromEnv())).list().filter((k) => options.pipeline === undefined || k.pipeline === options.pipeline);
      for (const k of keys) {
        const { sha256: _hash, ...shown } = k;
        process.stdout.write(options.json ? `${JSON.stringify(shown)}\n` : `${k.key_id}  ${k.pipeline}  ${k.rate_per_second}/s  created ${new Date(k.created_at).toISOString()} by ${k.created_by}\n`);
      }
    });
}
