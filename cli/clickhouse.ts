/**
 * Analytics commands: the ClickHouse schema, retention, the documented
 * queries, and the sink that fills the tables from a pipeline's topics.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { ALL_QUERIES, documentedQuery, formatRows, runDocumentedQuery } from '../connectors/clickhouse/analytics.ts';
import { createClickHouse } from '../connectors/clickhouse/client.ts';
import { ANALYST_DEFAULTS, migrate } from '../connectors/clickhouse/migrate.ts';
import { applyRetention } from '../connectors/clickhouse/retention.ts';
import { SluiceError } from '../lib/errors.ts';
import { connectionsFromEnv, parseEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { clickhouseCredentialsFromEnv } from '../processors/sink/config.ts';
import { runClickHouseSink } from '../processors/sink/runner.ts';
import { registerWebhookSinkCommand } from './webhook.ts';

const analystSchema = z.object({
  SLUICE_ANALYST_USER: z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, 'letters, digits and underscores').default(ANALYST_DEFAULTS.user),
  SLUICE_ANALYST_PASSWORD: z.string().min(1).default(ANALYST_DEFAULTS.password),
});

function wholeNumber(name: string, min: number) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new SluiceError('CONFIG_INVALID', `${name} must be a whole number >= ${min}, got "${value}".`);
    return n;
  };
}

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** A client for the configured ClickHouse (CLICKHOUSE_URL, CLICKHOUSE_USER, CLICKHOUSE_PASSWORD), closed after `use`. */
export async function withClickHouse<T>(use: (client: ReturnType<typeof createClickHouse>, url: string) => Promise<T>): Promise<T> {
  const url = connectionsFromEnv().clickhouseUrl;
  const { user, password } = clickhouseCredentialsFromEnv();
  const client = createClickHouse({ url, username: user, password });
  try {
    return await use(client, url);
  } finally {
    await client.close();
  }
}

export function registerClickHouseCommands(program: Command): void {
  const clickhouse = program.command('clickhouse').description('the analytics database: schema, retention, documented queries');

  clickhouse
    .command('migrate')
    .description('create database sluice and its tables, apply pending migrations, set up the read-only analyst user; idempotent')
    .option('--json', 'print the result as JSON')
    .action(async (options: { json?: boolean }) => {
      const analyst = parseEnv(analystSchema);
      const result = await withClickHouse((client, url) =>
        migrate(client, { url, analystUser: analyst.SLUICE_ANALYST_USER, analystPassword: analyst.SLUICE_ANALYST_PASSWORD }),
      );
      if (options.json) return out(JSON.stringify(result, null, 2));
      process.stderr.write(`ClickHouse ${result.serverVersion}\n`);
      for (const m of result.alreadyApplied) out(`exists   ${String(m.version).padStart(3)}  ${m.name}`);
      for (const m of result.applied) out(`applied  ${String(m.version).padStart(3)}  ${m.name}`);
      out(`analyst  ${result.analyst.user}: ${result.analyst.detail}`);
    });

  clickhouse
    .command('retention')
    .description('drop day partitions older than --days days (today and the N days before it are kept); a dry run unless --execute')
    .requiredOption('--days <n>', 'keep this many days before today', wholeNumber('--days', 1))
    .option('--execute', 'drop the partitions (without it, only list them)')
    .option('--json', 'print the result as JSON')
    .action(async (options: { days: number; execute?: boolean; json?: boolean }) => {
      const result = await withClickHouse((client) => applyRetention(client, { days: options.days, execute: options.execute === true }));
      if (options.json) return out(JSON.stringify(result, null, 2));
      const verb = result.executed ? 'dropped     ' : 'would drop  ';
      for (const p of result.partitions) out(`${verb}${p.table}  partition ${p.partition}  rows=${p.rows}  bytes=${p.bytesOnDisk}`);
      const rows = result.partitions.reduce((n, p) => n + p.rows, 0);
      process.stderr.write(
        `${result.partitions.length} partition(s) before ${result.cutoff}, ${rows} rows${result.executed ? ' dropped' : '; dry run: add --execute to drop them'}\n`,
      );
    });

  clickhouse
    .command('query')
    .description(`run a documented analyst query (docs/analytics.md): ${ALL_QUERIES.map((q) => q.name).join(', ')}`)
    .argument('[name]', 'the query; omit to list them')
    .option('--pipeline <name>', 'the pipeline (instance) to query; required to run a query')
    .option('--days <n>', 'how many days back', wholeNumber('--days', 1), 1)
    .option('--json', 'print rows as JSON lines')
    .action(async (name: string | undefined, options: { pipeline?: string; days: number; json?: boolean }) => {
      if (name === undefined) {
        for (const q of ALL_QUERIES) out(`${q.name.padEnd(22)}${q.title}`);
        return;
      }
      documentedQuery(name); // an unknown name fails before the missing option is mentioned
      if (options.pipeline === undefined) {
        throw new SluiceError('CONFIG_INVALID', `Say which pipeline to query: npx sluice clickhouse query ${name} --pipeline <name>`);
      }
      const { pipeline } = options;
      const rows = await withClickHouse((client) => runDocumentedQuery(client, name, { pipeline, days: options.days }));
      if (options.json) for (const row of rows) out(JSON.stringify(row));
      else process.stdout.write(formatRows(rows));
    });

  const sink = program.command('sink').description('sinks that copy a pipeline\'s topics out of Kafka');
  sink
    .command('clickhouse')
    .description('write the pipeline\'s validated, scored, decided and dead-letter records to ClickHouse, until SIGTERM or SIGINT')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .action(async (options: { pipeline: string }) => {
      const running = await runClickHouseSink({ pipeline: pipelineByName(options.pipeline), connections: connectionsFromEnv() });
      await running.done;
    });
  registerWebhookSinkCommand(sink);
}
