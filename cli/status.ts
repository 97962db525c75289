/**
 * `sluice status [--pipeline P] [--json]`: what the person on call looks at
 * first, per pipeline and per stage, read from Kafka (groups, offsets, the
 * control topic) and ClickHouse (decisions and dead letters), changing nothing.
 *
 * - running instances: members of the stage's consumer group;
 * - lag: offsets on the input topic the group has yet to commit, per partition
 *   (as kafka-consumer-groups counts them: commit markers included, except the
 *   last one a caught-up transactional reader always trails by);
 * - records per second: records written to the stage's output topic over the
 *   last minute (from the offsets at a timestamp; commit markers included);
 * - the newest decision's age, the last hour's dead letters by reason and the
 *   monitor's open alerts, from ClickHouse (what the sink and the monitor have
 *   written; said so when it cannot be reached);
 * - errors and transaction aborts of the running instances, from their
 *   heartbeats on `sluice.instances`;
 * - open circuits (partitions a stage's circuit breaker holds), from the
 *   control topic, with when and why;
 * - the mode, the kill switch (mode, who, why, when), the champion and
 *   challenger, the owners.
 */
import type { Command } from 'commander';
import { type ClickHouseClient, queryRows, quote } from '../connectors/clickhouse/client.ts';
import { TABLES } from '../connectors/clickhouse/schema.ts';
import { type AdminSession, openAdmin } from '../connectors/kafka/admin.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { type TopicSuffix, topicName } from '../lib/contracts.ts';
import { errorMessage } from '../lib/errors.ts';
import { createCommandLogger, type Logger } from '../lib/log.ts';
import type { Owners, PipelineInstance } from '../lib/pipeline.ts';
import { type Connections, connectionsFromEnv } from '../lib/settings.ts';
import { listPipelines, pipelineByName } from '../pipelines/registry.ts';
import { aliasSetting, type ControlState, KILL_SWITCH_MODEL, type KillSwitchMode, readControl } from '../processors/runtime/control.ts';
import { currentMode, groupIdOf, type PipelineMode } from '../processors/runtime/modes.ts';
import type { ProcessName } from '../processors/runtime/stage.ts';
import { listAlerts } from '../monitor/alerts.ts';
import { type Heartbeat, readHeartbeats } from '../processors/runtime/heartbeat.ts';
import { withClickHouse } from './clickhouse.ts';

const RATE_WINDOW_MS = 60_000;

/** Each process of a mode: the topic it reads and the one its progress is measured on. */
const PROCESSES: Record<PipelineMode, ReadonlyArray<{ name: ProcessName; input: TopicSuffix; output: TopicSuffix }>> = {
  independent: [
    { name: 'validate', input: 'raw', output: 'validated' },
    { name: 'score', input: 'validated', output: 'scored' },
    { name: 'decide', input: 'scored', output: 'decided' },
  ],
  colocated: [{ name: 'all', input: 'raw', output: 'decided' }],
};

export interface StageStatus {
  stage: ProcessName;
  group: string;
  /** The group's state: Stable, Empty (no instance running), PreparingRebalance, … */
  state: string;
  instances: number;
  lag: { total: number; partitions: Array<{ partition: number; lag: number }> };
  /** Records written to its output topic per second, over the last minute. */
  out_per_s: number;
  /** Input partitions its circuit breaker holds (sluice circuit reset), with when and why. */
  open_circuits: Array<{ partition: number; since: string; reason: string | null }>;
  /**
   * Failed attempts (each retried) and aborted transactions of the instances
   * running now, since each started, from their heartbeats; null when the
   * heartbeats could not be read.
   */
  errors: number | null;
  transaction_aborts: number | null;
  /** Seconds since a running instance last committed output (its heartbeat); null when none has, or unknown. */
  newest_output_age_s: number | null;
}

export interface PipelineStatus {
  pipeline: string;
  kind: string;
  mode: PipelineMode;
  /** The tiered kill switch; `by`, `reason` and `since` are null when it was never set. */
  kill_switch: { mode: KillSwitchMode; by: string | null; reason: string | null; since: string | null };
  models: { champion: string | null; challenger: string | null };
  owners: Owners;
  stages: StageStatus[];
  /** From ClickHouse; null with `clickhouse_error` set when it could not be asked. */
  newest_decision_age_s: number | null;
  dead_letters_last_hour: Record<string, number> | null;
  /** The monitor's alerts still firing (`sluice monitor`), newest first. */
  open_alerts: Array<{ kind: string; subject: string; severity: string; since: string; runbook: string }> | null;
  clickhouse_error: string | null;
}

/** A caught-up transactional reader trails the end by the last commit marker: that one is not lag. */
function lagOf(committed: bigint, low: bigint, high: bigint): number {
  const from = committed < 0n ? low : committed;
  const behind = high - from;
  return behind <= 1n ? 0 : Number(behind);
}

async function stageStatus(
  admin: AdminSession,
  control: ControlState,
  heartbeats: Heartbeat[] | null,
  pipeline: string,
  process: { name: ProcessName; input: TopicSuffix; output: TopicSuffix },
  now: number,
): Promise<StageStatus> {
  const group = groupIdOf(pipeline, process.name);
  const input = topicName(pipeline, process.input);
  const output = topicName(pipeline, process.output);
  const [{ state, members }, committed, ends, outEnds, outThen] = await Promise.all([
    admin.groupMembers(group),
    admin.committedOffsets(group, [input]),
    admin.partitionWatermarks(input),
    admin.partitionWatermarks(output),
    admin.offsetsAt(output, now - RATE_WINDOW_MS),
  ]);
  const partitions = [...ends].sort((a, b) => a.partition - b.partition).map((end) => {
    const offset = BigInt(committed.find((c) => c.partition === end.partition)?.offset ?? '-1');
    return { partition: end.partition, lag: lagOf(offset, BigInt(end.low), BigInt(end.high)) };
  });
  let written = 0n;
  for (const end of outEnds) {
    const then = BigInt(outThen.find((o) => o.partition === end.partition)?.offset ?? end.high);
    if (BigInt(end.high) > then) written += BigInt(end.high) - then;
  }
  return {
    stage: process.name,
    group,
    state: state ?? 'Unknown',
    instances: members,
    lag: { total: partitions.reduce((sum, p) => sum + p.lag, 0), partitions },
    out_per_s: Math.round((Number(written) / (RATE_WINDOW_MS / 1000)) * 10) / 10,
    open_circuits: control
      .openCircuits(pipeline, process.name)
      .map(({ partition, setting }) => ({ partition, since: new Date(setting.updated_at).toISOString(), reason: setting.reason })),
    ...instanceTotals(heartbeats?.filter((h) => h.pipeline === pipeline && h.process === process.name) ?? null, now),
  };
}

async function fromClickHouse(pipeline: string, now: number): Promise<Pick<PipelineStatus, 'newest_decision_age_s' | 'dead_letters_last_hour' | 'open_alerts' | 'clickhouse_error'>> {
  try {
    return await withClickHouse((client) => analyticsOf(client, pipeline, now));
  } catch (error) {
    return { newest_decision_age_s: null, dead_letters_last_hour: null, open_alerts: null, clickhouse_error: errorMessage(error).split('\n')[0]!.slice(0, 200) };
  }
}

async function analyticsOf(client: ClickHouseClient, pipeline: string, now: number): Promise<Pick<PipelineStatus, 'newest_decision_age_s' | 'dead_letters_last_hour' | 'open_alerts' | 'clickhouse_error'>> {
  const [newest] = await queryRows<{ newest: string }>(client, `SELECT max(decided_at_ms) AS newest FROM ${TABLES.decisions} WHERE pipeline = ${quote(pipeline)}`);
  const hourAgo = now - 3_600_000;
  const letters = await queryRows<{ reason: string; letters: string }>(
    client,
    `SELECT reason, count() AS letters FROM ${TABLES.deadLetters} FINAL WHERE pipeline = ${quote(pipeline)} AND failed_at_ms >= ${hourAgo} GROUP BY reason ORDER BY letters DESC, reason`,
  );
  const firing = await listAlerts(client, pipeline, 'firing');
  const newestMs = Number(newest?.newest ?? 0);
  return {
    open_alerts: firing.map((a) => ({ kind: a.kind, subject: a.subject, severity: a.severity, since: new Date(a.started_at).toISOString(), runbook: a.runbook })),
    newest_decision_age_s: newestMs > 0 ? Math.max(0, Math.round((now - newestMs) / 100) / 10) : null,
    dead_letters_last_hour: Object.fromEntries(letters.map((row) => [row.reason, Number(row.letters)])),
    clickhouse_error: null,
  };
}

function instanceTotals(heartbeats: Heartbeat[] | null, now: number): Pick<StageStatus, 'errors' | 'transaction_aborts' | 'newest_output_age_s'> {
  if (heartbeats === null) return { errors: null, transaction_aborts: null, newest_output_age_s: null };
  const newest = Math.max(0, ...heartbeats.map((h) => h.last_commit_at));
  return {
    errors: heartbeats.reduce((sum, h) => sum + h.errors, 0),
    transaction_aborts: heartbeats.reduce((sum, h) => sum + h.transaction_aborts, 0),
    newest_output_age_s: newest > 0 ? Math.max(0, Math.round((now - newest) / 100) / 10) : null,
  };
}

export async function pipelineStatus(
  pipeline: PipelineInstance,
  deps: { admin: AdminSession; control: ControlState; heartbeats: Heartbeat[] | null; now: number },
): Promise<PipelineStatus> {
  const { admin, control, heartbeats, now } = deps;
  const mode = currentMode(control, pipeline.name);
  const [stages, analytics] = await Promise.all([
    Promise.all(PROCESSES[mode].map((process) => stageStatus(admin, control, heartbeats, pipeline.name, process, now))),
    fromClickHouse(pipeline.name, now),
  ]);
  return {
    pipeline: pipeline.name,
    kind: pipeline.plugin.kind,
    mode,
    kill_switch: killSwitchOf(control, pipeline.name),
    models: {
      champion: control.get(pipeline.name, aliasSetting('champion'))?.value ?? null,
      challenger: control.get(pipeline.name, aliasSetting('challenger'))?.value ?? null,
    },
    owners: pipeline.owners,
    stages,
    ...analytics,
  };
}

function killSwitchOf(control: ControlState, pipeline: string): PipelineStatus['kill_switch'] {
  const setting = control.get(pipeline, KILL_SWITCH_MODEL);
  return {
    mode: control.killSwitchMode(pipeline),
    by: setting?.updated_by ?? null,
    reason: setting?.reason ?? null,
    since: setting ? new Date(setting.updated_at).toISOString() : null,
  };
}

function render(status: PipelineStatus): string {
  const o = status.owners;
  const models = `champion ${status.models.champion ?? '(ACTIVE)'}${status.models.challenger ? `, challenger ${status.models.challenger}` : ''}`;
  const lines = [
    `${status.pipeline} (${status.kind}) · ${status.mode} · kill switch ${status.kill_switch.mode} · ${models}`,
    ...(status.kill_switch.mode === 'model' ? [] : [`  kill switch ${status.kill_switch.mode} since ${status.kill_switch.since}, by ${status.kill_switch.by}: ${status.kill_switch.reason ?? '(no reason given)'}`]),
    `  owners: team ${o.team} · data ${o.data} · model ${o.model} · infra ${o.infra} · on call ${o.oncall} · escalation ${o.escalation}`,
    `  runbooks: ${o.runbook}, ${o.runbookBase}`,
    `  ${'STAGE'.padEnd(9)} ${'INSTANCES'.padStart(9)} ${'STATE'.padEnd(19)} ${'LAG'.padStart(8)} ${'OUT/S'.padStart(9)} ${'ERRORS'.padStart(7)} ${'ABORTS'.padStart(7)} ${'LAST OUT'.padStart(9)}  LAG BY PARTITION`,
    ...status.stages.map(
      (s) =>
        `  ${s.stage.padEnd(9)} ${String(s.instances).padStart(9)} ${s.state.padEnd(19)} ${String(s.lag.total).padStart(8)} ${String(s.out_per_s).padStart(9)} ${String(s.errors ?? '?').padStart(7)} ${String(s.transaction_aborts ?? '?').padStart(7)} ${(s.newest_output_age_s === null ? '-' : `${s.newest_output_age_s}s`).padStart(9)}  ${s.lag.partitions.map((p) => `${p.partition}:${p.lag}`).join(' ')}`,
    ),
    ...status.stages.flatMap((s) =>
      s.open_circuits.map((c) => `  CIRCUIT OPEN: ${s.stage} partition ${c.partition} held since ${c.since} (${c.reason ?? 'no reason'}); resume: sluice circuit reset --pipeline ${status.pipeline} --stage ${s.stage}`),
    ),
  ];
  if (status.clickhouse_error !== null) {
    lines.push(`  ClickHouse: not reachable (${status.clickhouse_error}); decisions and dead letters unknown`);
  } else {
    lines.push(`  newest decision in ClickHouse: ${status.newest_decision_age_s === null ? 'none' : `${status.newest_decision_age_s} s ago`}`);
    const letters = Object.entries(status.dead_letters_last_hour ?? {});
    lines.push(`  dead letters, last hour: ${letters.length === 0 ? 'none' : letters.map(([reason, n]) => `${reason} ${n}`).join(', ')}`);
    const alerts = status.open_alerts ?? [];
    lines.push(`  open alerts: ${alerts.length === 0 ? 'none' : alerts.map((a) => `${a.severity} ${a.kind} on ${a.subject} since ${a.since} (${a.runbook})`).join('; ')}`);
  }
  return lines.join('\n');
}

export async function collectStatus(names: readonly string[], connections: Connections, logger: Logger): Promise<PipelineStatus[]> {
  const now = Date.now();
  const [control, heartbeats] = await Promise.all([
    readControl({ brokers: connections.kafkaBrokers, catalog: new SchemaCatalog(connections.schemaRegistryUrl), clientId: 'sluice-status', logger }),
    readHeartbeats({ brokers: connections.kafkaBrokers, logger, now }).catch((error) => {
      logger.warn({ err: errorMessage(error) }, 'instance heartbeats unreadable: errors and aborts unknown (sluice topics create makes the topic)');
      return null;
    }),
  ]);
  const admin = await openAdmin(connections.kafkaBrokers, 'sluice-status');
  try {
    return await Promise.all(names.map((name) => pipelineStatus(pipelineByName(name), { admin, control, heartbeats, now })));
  } finally {
    await admin.close();
  }
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('per pipeline and stage: instances, lag, throughput, mode, kill switch, models, dead letters, open alerts, owners')
    .option('--pipeline <name>', 'one pipeline (default: every registered one)')
    .option('--json', 'one JSON object per pipeline, in an array')
    .action(async (options: { pipeline?: string; json?: boolean }) => {
      const names = options.pipeline ? [options.pipeline] : listPipelines().map((plugin) => plugin.kind);
      const statuses = await collectStatus(names, connectionsFromEnv(), createCommandLogger({ component: 'status' }, 'warn'));
      process.stdout.write(options.json ? `${JSON.stringify(statuses, null, 2)}\n` : `${statuses.map(render).join('\n\n')}\n`);
    });
}
