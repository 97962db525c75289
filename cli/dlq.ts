/**
 * `sluice dlq inspect`: a pipeline's dead letters grouped by fingerprint
 * (reason, stage, and the field the message names), with how many, first and
 * last seen, an example message and a preview of the original bytes, masked as
 * the sink masks them. Read from ClickHouse, where the sink loads the
 * dead-letter topic; the SQL runs on ClickHouse 18.16 and current alike.
 */
import type { Command } from 'commander';
import { queryRows, quote } from '../connectors/clickhouse/client.ts';
import { TABLES } from '../connectors/clickhouse/schema.ts';
import { DEAD_LETTER_REASONS } from '../lib/contracts.ts';
import { SluiceError } from '../lib/errors.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { withClickHouse } from './clickhouse.ts';
import { registerRedriveCommand } from './redrive.ts';
import { sinceMs } from './when.ts';

export interface DeadLetterGroup {
  reason: string;
  stage: string;
  /** The field the messages name (`payload.email`), empty when the whole value is at fault. */
  field: string;
  letters: number;
  first_seen: string;
  last_seen: string;
  example_message: string;
  /** The original bytes' first characters, personal fields masked. */
  preview: string;
}

/** The field a dead-letter message names: validation messages start with it (`payload.email: …`). */
export const FIELD_PATTERN = '^([A-Za-z_][A-Za-z0-9_.]*(\\[[0-9]+\\])?[A-Za-z0-9_.]*): ';

export function inspectSql(options: { pipeline: string; sinceMs: number; reason?: string; limit: number }): string {
  const reason = options.reason === undefined ? '' : `\n  AND reason = ${quote(options.reason)}`;
  // FINAL: the sink loads at least once; ReplacingMergeTree folds a re-delivered letter.
  return `SELECT
  reason,
  stage,
  extract(message, ${quote(FIELD_PATTERN)}) AS field,
  count() AS letters,
  toString(toDateTime(intDiv(min(failed_at_ms), 1000))) AS first_seen,
  toString(toDateTime(intDiv(max(failed_at_ms), 1000))) AS last_seen,
  any(message) AS example_message,
  any(preview) AS preview
FROM ${TABLES.deadLetters} FINAL
WHERE pipeline = ${quote(options.pipeline)}
  AND failed_at_ms >= ${Math.floor(options.sinceMs)}${reason}
GROUP BY reason, stage, field
ORDER BY letters DESC, reason, stage, field
LIMIT ${options.limit}`;
}

function render(groups: DeadLetterGroup[]): string {
  if (groups.length === 0) return 'no dead letters in that window';
  return groups
    .map((g) =>
      [
        `${g.letters} × ${g.reason} at ${g.stage}${g.field ? ` on ${g.field}` : ''}  (first ${g.first_seen}, last ${g.last_seen} UTC)`,
        `  e.g. ${g.example_message}`,
        `  ${g.preview}`,
      ].join('\n'),
    )
    .join('\n\n');
}

export function registerDeadLetterCommands(program: Command): void {
  const dlq = program.command('dlq').description("a pipeline's dead letters");
  dlq
    .command('inspect')
    .description('dead letters grouped by reason, stage and field, with counts, first and last seen, and a masked preview (from ClickHouse)')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .option('--reason <reason>', `one reason: ${DEAD_LETTER_REASONS.join(', ')}`)
    .option('--since <when>', 'a duration back from now (90m, 24h, 7d) or an ISO-8601 time', '24h')
    .option('--limit <n>', 'the most groups to show', '20')
    .option('--json', 'print the groups as a JSON array')
    .action(async (options: { pipeline: string; reason?: string; since: string; limit: string; json?: boolean }) => {
      const pipeline = pipelineByName(options.pipeline);
      if (options.reason !== undefined && !(DEAD_LETTER_REASONS as readonly string[]).includes(options.reason)) {
        throw new SluiceError('CONFIG_INVALID', `Unknown reason "${options.reason}": use one of ${DEAD_LETTER_REASONS.join(', ')}.`);
      }
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new SluiceError('CONFIG_INVALID', `--limit ${options.limit}: give a whole number from 1 to 10000.`);
      const sql = inspectSql({ pipeline: pipeline.name, sinceMs: sinceMs(options.since, Date.now()), reason: options.reason, limit });
      const rows = await withClickHouse((client) => queryRows<Record<keyof DeadLetterGroup, string>>(client, sql));
      const groups: DeadLetterGroup[] = rows.map((row) => ({ ...row, letters: Number(row.letters) }));
      process.stdout.write(options.json ? `${JSON.stringify(groups, null, 2)}\n` : `${render(groups)}\n`);
    });
  registerRedriveCommand(dlq);
}
