import kafkajs from 'kafkajs';
import type { ISocketFactory } from 'kafkajs';
import type { Logger } from '../../lib/log.ts';
import { framedSocketFactory } from './socket.ts';

const { Kafka, logLevel } = kafkajs;
// sluice creates every producer with the Java-compatible default partitioner; the v2 migration notice is noise.
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
export type { Admin, Consumer, Producer, Kafka as KafkaClient } from 'kafkajs';

/**
 * kafkajs's retry budget adds up to about 10 s by default; a broker restart
 * takes longer, so the client retries for about a minute before giving up.
 */
export const KAFKA_RETRY = { initialRetryTime: 300, maxRetryTime: 10_000, retries: 10 } as const;

/**
 * A long-lived consumer's retries (joining its group, fetching): about the
 * same minute in all, but at most 2 s apart. After a broker outage the group
 * coordinator answers COORDINATOR_LOAD_IN_PROGRESS for several seconds; with
 * waits growing to 10 s a stage rejoined up to 10 s after it could have
 * (27 s after the broker resumed, in the reliability test's outage).
 */
export const CONSUMER_RETRY = { initialRetryTime: 300, maxRetryTime: 2_000, retries: 30 } as const;

const levelNames: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

export interface KafkaOptions {
  brokers: string[];
  clientId: string;
  logger?: Logger;
  retry?: { initialRetryTime?: number; maxRetryTime?: number; retries?: number };
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** sluice's sockets (socket.ts) unless given: bench/fetch.ts compares them with kafkajs's own. */
  socketFactory?: ISocketFactory;
}

/** The one place a Kafka client is constructed: kafkajs's logs go to pino. */
export function createKafka(options: KafkaOptions): kafkajs.Kafka {
  const log = options.logger?.child({ component: 'kafkajs' });
  return new Kafka({
    clientId: options.clientId,
    brokers: options.brokers,
    connectionTimeout: options.connectionTimeoutMs ?? 3_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    retry: { ...KAFKA_RETRY, ...options.retry },
    socketFactory: options.socketFactory ?? framedSocketFactory,
    logLevel: log ? logLevel.WARN : logLevel.NOTHING,
    logCreator: () => (entry) => {
      if (!log) return;
      const { message, ...rest } = entry.log;
      // Our transactional producers bound their retries on purpose and are
      // replaced after any failure (see exactly-once.ts), so this warning is noise.
      if (message.startsWith('Limiting retries for the idempotent producer')) return;
      // The broker answers CONCURRENT_TRANSACTIONS for a few ms after every
      // commit and the producer retries it (exactly-once.ts): routine, not an error.
      const routine = rest['error'] === CONCURRENT_TRANSACTIONS_MESSAGE || message.endsWith(CONCURRENT_TRANSACTIONS_MESSAGE);
      const level = routine ? 'debug' : (levelNames[entry.level] ?? 'info');
      log[level](rest, message);
    },
  });
}

const CONCURRENT_TRANSACTIONS_MESSAGE =
  'The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing';

/**
 * The Kafka protocol error type (`MESSAGE_TOO_LARGE`, …) of a kafkajs error,
 * looked up through the wrappers kafkajs puts around it (retries exceeded,
 * non-retriable); undefined for anything else.
 */
export function kafkaErrorType(error: unknown): string | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    const type = (current as { type?: unknown }).type;
    if (typeof type === 'string') return type;
    current = current.cause;
  }
  return undefined;
}

/** True when a broker answers a metadata request within a few seconds. */
export async function probeKafka(brokers: string[]): Promise<boolean> {
  const admin = createKafka({ brokers, clientId: 'sluice-probe', retry: { retries: 0 }, requestTimeoutMs: 3_000 }).admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
