/**
 * `sluice sink webhook`: delivers a pipeline's decisions to an HTTP endpoint
 * (docs/webhook.md). The sink's code is imported only when the command runs,
 * so the other commands (and the ClickHouse sink) do not load it.
 */
import type { Command } from 'commander';
import { connectionsFromEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';

export function registerWebhookSinkCommand(sink: Command): void {
  sink
    .command('webhook')
    .description(
      'POST each decision of the pipeline (latest version wins) to --url, signed, retried with backoff, dead-lettered after the retry budget; offsets committed after delivery; until SIGTERM or SIGINT (docs/webhook.md)',
    )
    .requiredOption('--pipeline <name>', 'pipeline name')
    .requiredOption('--url <url>', 'the receiver: an http:// or https:// URL')
    .option('--secret-env <NAME>', 'sign every request with HMAC-SHA256 keyed with this environment variable\'s value (without it: unsigned)')
    .option('--name <endpoint>', 'for several endpoints of one pipeline: names the consumer group (sluice.<pipeline>.webhook.<endpoint>) and the metrics')
    .action(async (options: { pipeline: string; url: string; secretEnv?: string; name?: string }) => {
      const pipeline = pipelineByName(options.pipeline);
      const { webhookConfig } = await import('../processors/webhook/config.ts');
      // Every flag and variable is checked before anything connects.
      const config = webhookConfig({ url: options.url, secretEnv: options.secretEnv, name: options.name });
      const connections = connectionsFromEnv();
      const { runWebhookSink } = await import('../processors/webhook/runner.ts');
      const running = await runWebhookSink({ pipeline, connections, config });
      await running.done;
    });
}
