/**
 * `sluice review serve`: wires the store (Kafka, the registry) into the app
 * and listens. Start-up: parse the settings, check the pipelines' topics,
 * create the service's own, read accounts, sessions and review state to their
 * end, then listen; items keep arriving from `<p>.review`. SIGTERM stops
 * listening, lets requests in flight finish and exits.
 */
import type { FastifyInstance } from 'fastify';
import { keepRunning, Resources, type Running } from '../lib/lifecycle.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import type { PipelineInstance } from '../lib/pipeline.ts';
import { listPipelines, pipelineByName } from '../pipelines/registry.ts';
import { buildReviewApp } from './app.ts';
import type { ReviewConfig } from './config.ts';
import { ReviewStore } from './store.ts';

export interface RunningReview extends Running {
  app: FastifyInstance;
  store: ReviewStore;
  port: number;
  url: string;
}

export const servedPipelines = (config: Pick<ReviewConfig, 'pipelines'>): PipelineInstance[] =>
  (config.pipelines ?? listPipelines().map((plugin) => plugin.kind)).map((name) => pipelineByName(name));

export async function serveReview(options: { config: ReviewConfig; logger?: Logger; handleSignals?: boolean; onReviewApplied?(pipeline: string, itemId: string): void }): Promise<RunningReview> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ component: 'review', instance: config.instanceId }, config.logLevel);
  const resources = new Resources(logger);
  try {
    const store = await ReviewStore.open({ config, pipelines: servedPipelines(config), logger, ...(options.onReviewApplied && { onReviewApplied: options.onReviewApplied }) });
    resources.add(() => store.close());
    const app = await buildReviewApp({ store, logger, cookieSecure: config.cookieSecure, sessionMs: config.sessionMs });
    await app.listen({ port: config.port, host: config.host });
    resources.add(() => app.close());
    const address = app.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : config.port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    logger.info({ url, pipelines: [...store.desks.keys()] }, 'review service running');
    const running = keepRunning({ resources, logger, stopping: 'finishing requests in flight', handleSignals: options.handleSignals ?? false, shutdownTimeoutMs: options.handleSignals ? 15_000 : undefined });
    return { ...running, app, store, port, url };
  } catch (error) {
    await resources.close();
    throw error;
  }
}
