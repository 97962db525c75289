/**
 * The demo: every pipeline (or one) on the local stack, as an operator runs it.
 * Stack up, topics, schemas, the three stages as separate processes, a
 * generated stream with malformed events in it, live progress, a summary; then
 * it stops what it started.
 */
import { randomBytes } from 'node:crypto';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { stackDown, stackPaths, stackStatus, stackUp } from '../deploy/local/stack.ts';
import { ensureTopics } from '../connectors/kafka/admin.ts';
import { SluiceError } from '../lib/errors.ts';
import { createCommandLogger } from '../lib/log.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import type { Logger } from '../lib/log.ts';
import type { PipelineInstance } from '../lib/pipeline.ts';
import type { Connections } from '../lib/settings.ts';
import { listPipelines, pipelineByName } from '../pipelines/registry.ts';
import { pipelineTopics, registerPipelineSchemas } from './pipeline.ts';
import { STAGES, type StageProcess, spawnSink, spawnStage } from './processes.ts';
import { createClickHouse, queryRows, quote } from '../connectors/clickhouse/client.ts';
import { formatRows, runDocumentedQuery } from '../connectors/clickhouse/analytics.ts';
import { migrate } from '../connectors/clickhouse/migrate.ts';
import { clickhouseCredentialsFromEnv } from '../processors/sink/config.ts';
import { Outcomes, percentile, produceStreamOffThread } from './traffic.ts';
import { PIPELINE_MODES, type PipelineMode, switchMode } from '../processors/runtime/modes.ts';
import type { ProcessName } from '../processors/runtime/stage.ts';

interface DemoOptions {
  /** One pipeline; by default every registered pipeline, one after the other. */
  pipeline?: string;
  events: string;
  rate: string;
  badEvery: string;
  keepStack?: boolean;
  json?: boolean;
  /** independent (three stage processes) or colocated (`sluice run all`). */
  mode: string;
}

const say = (line: string) => process.stderr.write(`${line}\n`);

const WARM_UP_EVENTS = 2_000;
const WAIT_TIMEOUT_MS = 120_000;

/** Polls `done` until it holds; past the timeout, fails with what `status` says. */
async function until(done: () => boolean | Promise<boolean>, status: () => string): Promise<void> {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  while (!(await done())) {
    if (Date.now() > deadline) throw new SluiceError('STACK_SERVICE_FAILED', `Timed out after ${WAIT_TIMEOUT_MS / 1000} s: ${status()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function table(title: string, counts: Record<string, number>): string {
  const rows = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const width = Math.max(8, ...rows.map(([k]) => k.length));
  return [title, ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${String(v).padStart(7)}`)].join('\n');
}

export async function runDemo(options: DemoOptions): Promise<void> {
  if (!(PIPELINE_MODES as readonly string[]).includes(options.mode)) throw new SluiceError('CONFIG_INVALID', `Unknown mode "${options.mode}": use ${PIPELINE_MODES.join(' or ')}.`);
  const pipelines = options.pipeline ? [pipelineByName(options.pipeline)] : listPipelines().map((plugin) => pipelineByName(plugin.kind));
  const count = Number(options.events);
  const rate = Number(options.rate);
  const badEvery = Number(options.badEvery);
  if (!Number.isInteger(count) || count <= 0) throw new SluiceError('CONFIG_INVALID', '--events must be a positive integer');
  const connections = connectionsFromEnv();
  const stackOptions = {
    brokers: connections.kafkaBrokers,
    registryUrl: connections.schemaRegistryUrl,
    clickhouseUrl: connections.clickhouseUrl,
    progress: (line: string) => say(`  ${line}`),
  };
  const logger = createCommandLogger({ component: 'demo' }, 'warn');
  const wasUp = (await stackStatus(stackOptions)).every((s) => s.answering);
  const credentials = clickhouseCredentialsFromEnv();
  const clickhouse = createClickHouse({ url: connections.clickhouseUrl, username: credentials.user, password: credentials.password });

  try {
    say('1/6 local stack');
    await stackUp(stackOptions);
    await migrate(clickhouse, { url: connections.clickhouseUrl });
    for (const pipeline of pipelines) {
      say(`\n== ${pipeline.name}: ${pipeline.plugin.description}`);
      await demoPipeline(pipeline, { options, count, rate, badEvery, connections, clickhouse, logger });
    }
  } finally {
    await clickhouse.close();
    if (!wasUp && !options.keepStack) {
      say('stopping the local stack (it was not running before the demo; --keep-stack keeps it)');
      await stackDown(stackOptions);
    }
  }
}

/** One pipeline's part of the demo: its topics and schemas, its stages and sink, a stream, a summary, two queries. */
async function demoPipeline(
  pipeline: PipelineInstance,
  ctx: {
    options: DemoOptions;
    count: number;
    rate: number;
    badEvery: number;
    connections: Connections;
    clickhouse: ReturnType<typeof createClickHouse>;
    logger: Logger;
  },
): Promise<void> {
  const { options, count, rate, badEvery, connections, clickhouse, logger } = ctx;
  const stages: StageProcess[] = [];
  let outcomes: Outcomes | undefined;
  try {
    say('2/6 topics, schemas and ClickHouse tables');
    await ensureTopics(connections.kafkaBrokers, pipelineTopics(pipeline.name));
    await registerPipelineSchemas(pipeline.name, connections.schemaRegistryUrl);

    const streamBase = { brokers: connections.kafkaBrokers, pipeline: pipeline.name, seed: 2026, maxMessageBytes: pipeline.plugin.maxMessageBytes };

    const mode = options.mode as PipelineMode;
    await switchMode({ brokers: connections.kafkaBrokers, catalog: new SchemaCatalog(connections.schemaRegistryUrl), pipeline: pipeline.name, to: mode, reason: 'demo', updatedBy: 'sluice-demo', logger });
    const processes: ProcessName[] = mode === 'colocated' ? ['all'] : [...STAGES];
    say(mode === 'colocated' ? '3/6 starting validate, score and decide co-located in one process, and the ClickHouse sink' : '3/6 starting validate, score, decide and the ClickHouse sink as separate processes');
    const logDir = join(stackPaths().logs, 'demo', pipeline.name);
    for (const stage of processes) {
      stages.push(spawnStage({ pipeline: pipeline.name, stage, logFile: join(logDir, `${stage}.log`) }));
    }
    const sink = spawnSink({ pipeline: pipeline.name, logFile: join(logDir, 'sink.log') });
    // On one machine the sink competes with the stages for the same cores. It
    // batches by the second anyway, so the latency-critical stages go first.
    if (sink.child.pid !== undefined) setPriority(sink.child.pid, 19);
    stages.push(sink);
    await Promise.all(stages.map((s) => s.running));
    say(`    logs: ${logDir}`);

    const runId = `${Date.now().toString(36)}-${randomBytes(2).toString('hex')}`;
    const idPrefix = `demo-${runId}`;
    const catalog = new SchemaCatalog(connections.schemaRegistryUrl);
    const follow = (prefix: string) =>
      Outcomes.follow({ brokers: connections.kafkaBrokers, pipeline: pipeline.name, catalog, idPrefix: prefix, logger });

    // Freshly started JVMs and stages are slow for their first second or two;
    // the figures below describe the pipeline once it is warm.
    say(`    warming up with ${WARM_UP_EVENTS} events`);
    const warmUp = await follow(`warmup-${runId}`);
    try {
      const { valid } = await produceStreamOffThread({ ...streamBase, count: WARM_UP_EVENTS, ratePerSec: 0, badEvery: 0, idPrefix: `warmup-${runId}` });
      await until(() => warmUp.decided.size >= valid, () => `warm-up: ${warmUp.decided.size}/${valid} decided. See the stage logs in ${logDir}.`);
    } finally {
      await warmUp.stop();
    }
    outcomes = await follow(idPrefix);
    const tracked = outcomes;

    say(`4/6 producing ${count} events at ${rate > 0 ? `${rate}/s` : 'full speed'}, one malformed event every ${badEvery}`);
    let produced = 0;
    const render = () =>
      `    produced ${produced}/${count} · decided ${tracked.decided.size} · dead letters ${tracked.deadLetterCount()}`;
    const ticker = setInterval(() => say(render()), 1_000);
    let stream: Awaited<ReturnType<typeof produceStreamOffThread>>;
    try {
      stream = await produceStreamOffThread({
        ...streamBase,
        count,
        ratePerSec: rate,
        badEvery,
        idPrefix,
        onProgress: (n) => {
          produced = n;
        },
      });
      const { valid, bad } = stream;
      await until(
        () => tracked.decided.size >= valid && tracked.deadLetterCount() >= bad,
        () => `${render().trim()}. See the stage logs in ${logDir}.`,
      );
    } finally {
      clearInterval(ticker);
    }
    say(render());

    say('5/6 summary');
    const seconds = (tracked.lastDecisionAt - stream.startedAt) / 1000;
    const summary = {
      pipeline: pipeline.name,
      mode: options.mode,
      events_in: stream.valid + stream.bad,
      valid_events: stream.valid,
      malformed_events: stream.bad,
      decisions: tracked.decided.size,
      duplicate_decisions: tracked.duplicates,
      by_decision: Object.fromEntries(tracked.byDecision),
      by_decided_by: Object.fromEntries(tracked.byDecidedBy),
      dead_letters_by_reason: Object.fromEntries(tracked.deadLetters),
      throughput_events_per_s: Math.round(stream.valid / seconds),
      latency_ms: { p50: percentile(tracked.latenciesMs, 50), p99: percentile(tracked.latenciesMs, 99) },
      model_version: tracked.modelVersion,
      policy_version: tracked.policyVersion,
    };
    if (options.json) {
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    } else {
      process.stdout.write(
        [
          '',
          `sluice demo · ${summary.pipeline} · ${summary.mode} · model ${summary.model_version} · ${summary.policy_version}`,
          `events in          ${summary.events_in} (${summary.valid_events} valid, ${summary.malformed_events} malformed)`,
          `decisions          ${summary.decisions} (duplicates: ${summary.duplicate_decisions})`,
          table('by decision', summary.by_decision),
          table('by decided_by', summary.by_decided_by),
          table('dead letters by reason', summary.dead_letters_by_reason),
          `throughput         ${summary.throughput_events_per_s} events/s end to end`,
          `latency            p50 ${summary.latency_ms.p50} ms · p99 ${summary.latency_ms.p99} ms (produced → decision readable downstream, after a warm-up of ${WARM_UP_EVENTS} events)`,
          '',
        ].join('\n'),
      );
    }

    say('6/6 ClickHouse: two of the documented queries (docs/analytics.md), once the sink has caught up');
    await waitForSink(clickhouse, pipeline.name, idPrefix, summary.decisions);
    for (const name of ['decision-mix', 'loss-check']) {
      const rows = await runDocumentedQuery(clickhouse, name, { pipeline: pipeline.name });
      if (options.json) process.stdout.write(`${JSON.stringify({ query: name, rows })}\n`);
      else process.stdout.write(`\n$ npx sluice clickhouse query ${name}\n${formatRows(rows)}\n`);
    }
  } finally {
    await outcomes?.stop();
    for (const stage of stages) stage.kill('SIGTERM');
    await Promise.all(stages.map((s) => s.exited));
  }
}

/** Waits until ClickHouse holds every stage's row of every decided event of this run (its event ids start with `idPrefix`). */
async function waitForSink(clickhouse: ReturnType<typeof createClickHouse>, pipeline: string, idPrefix: string, decisions: number): Promise<void> {
  let held = 0;
  await until(
    async () => {
      const [row] = await queryRows<{ n: string }>(
        clickhouse,
        // Every stage's rows, not only the decisions: the sink writes each topic as it fetches it.
        `SELECT if(count() = 3, min(n), 0) AS n FROM (SELECT uniqExact(event_id) AS n FROM sluice.stage_events WHERE pipeline = ${quote(pipeline)} ` +
          `AND event_id LIKE ${quote(`${idPrefix}%`)} AND outcome = 'passed' AND stage IN ('validate', 'score', 'decide') GROUP BY stage)`,
      );
      held = Number(row?.n ?? 0);
      return held >= decisions;
    },
    () => `the sink did not catch up: ClickHouse holds every stage's row for ${held} of ${decisions} decided events`,
  );
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the whole pipeline on the local stack with a generated stream and print a summary')
    .option('--pipeline <name>', 'one pipeline (default: every registered pipeline, one after the other)')
    .option('--events <n>', 'valid events to produce', '5000')
    .option('--rate <n>', 'events per second (0 = as fast as possible)', '1000')
    .option('--bad-every <n>', 'one malformed event after every n valid ones (0 = none)', '100')
    .option('--keep-stack', 'leave the local stack running afterwards')
    .option('--json', 'print the summary as JSON')
    .option('--mode <mode>', `how the stages run: ${PIPELINE_MODES.join(' or ')} (one process, one transaction per chunk; see README)`, 'independent')
    .action(runDemo);
}
