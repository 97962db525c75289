/**
 * `sluice replay`: re-decide a time window of a pipeline with the current
 * champion and policy. Verbs after `kafka-consumer-groups --reset-offsets
 * --to-datetime`: a dry run by default (the plan, nothing changed),
 * `--execute` to apply. Progress on stderr, the summary on stdout, `--json`
 * for scripts. docs/rollback.md walks through it.
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { SluiceError } from '../lib/errors.ts';
import { createCommandLogger } from '../lib/log.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';
import { executeReplay, planReplay, type ReplayContext } from '../processors/replay/engine.ts';
import { formatPlan, formatSummary, parseDatetime, REPLAY_STAGES, type ReplayRequest, type ReplayStage, runName } from '../processors/replay/plan.ts';

interface ReplayOptions {
  pipeline: string;
  fromDatetime: string;
  toDatetime?: string;
  fromStage: string;
  execute?: boolean;
  force?: boolean;
  json?: boolean;
  progress: boolean;
}

export function replayRequestOf(options: Pick<ReplayOptions, 'pipeline' | 'fromDatetime' | 'toDatetime' | 'fromStage'>, pipeline: string): ReplayRequest {
  if (!(REPLAY_STAGES as readonly string[]).includes(options.fromStage)) {
    throw new SluiceError('CONFIG_INVALID', `--from-stage "${options.fromStage}": use ${REPLAY_STAGES.join(' or ')}.`);
  }
  const fromMs = parseDatetime(options.fromDatetime, '--from-datetime');
  const toMs = options.toDatetime === undefined ? null : parseDatetime(options.toDatetime, '--to-datetime');
  if (toMs !== null && toMs <= fromMs) throw new SluiceError('CONFIG_INVALID', `--to-datetime ${options.toDatetime} is not after --from-datetime ${options.fromDatetime}.`);
  return { pipeline, fromStage: options.fromStage as ReplayStage, fromMs, toMs };
}

export function registerReplayCommand(program: Command): void {
  program
    .command('replay')
    .description('re-decide a time window with the current champion and policy; prints the plan unless --execute')
    .requiredOption('--pipeline <name>', 'pipeline name')
    .requiredOption('--from-datetime <time>', 'window start: ISO 8601 (UTC unless a zone is given) or epoch ms')
    .option('--to-datetime <time>', 'window end (exclusive); default: when the replay first starts')
    .option('--from-stage <stage>', 'score: re-score <p>.validated; validate: also re-validate <p>.raw', 'score')
    .option('--execute', 'replay (without it: print the plan, change nothing)')
    .option('--force', 'replay a window again that was already replayed')
    .option('--json', 'print the plan or summary as one JSON object')
    .option('--no-progress', 'no progress bar on stderr')
    .action(async (options: ReplayOptions) => {
      const pipeline = pipelineByName(options.pipeline);
      const request = replayRequestOf(options, pipeline.name);
      const ctx: ReplayContext = {
        pipeline,
        connections: connectionsFromEnv(),
        env: process.env,
        logger: createCommandLogger({ pipeline: pipeline.name, component: 'replay' }, process.env.LOG_LEVEL === undefined ? 'warn' : (process.env.LOG_LEVEL as 'warn')),
        by: process.env.SLUICE_ACTOR ?? process.env.USER ?? 'sluice-cli',
        now: Date.now,
      };
      if (!options.execute) {
        const plan = await planReplay(ctx, request, { force: options.force === true });
        process.stdout.write(options.json ? `${JSON.stringify(plan)}\n` : formatPlan(plan));
        return;
      }
      const showProgress = options.progress && !options.json;
      const bar = new cliProgress.SingleBar(
        { stream: process.stderr, format: 'replay {run} |{bar}| {percentage}% | {replayed} re-decided | {rate} offsets/s | ETA {eta_formatted}', hideCursor: false, noTTYOutput: true, notTTYSchedule: 2_000, etaBuffer: 50 },
        cliProgress.Presets.shades_classic,
      );
      let started = false;
      const startedAt = Date.now();
      const result = await executeReplay(ctx, request, {
        force: options.force === true,
        onStart: (state) => {
          if (!showProgress) return;
          const total = state.ranges.reduce((n, r) => n + Number(BigInt(r.end) - BigInt(r.start)), 0);
          bar.start(Math.max(total, 1), 0, { run: runName(state), replayed: 0, rate: 0 });
          started = true;
        },
        onProgress: ({ covered, replayed }) => {
          if (!started) return;
          const seconds = Math.max((Date.now() - startedAt) / 1000, 0.001);
          bar.update(Number(covered), { replayed, rate: Math.round(Number(covered) / seconds) });
        },
      }).finally(() => {
        if (started) bar.stop();
      });
      if (result.summary === null) {
        const message = `replay ${runName(result.state)} already finished: nothing to do (--force replays the window again)`;
        process.stdout.write(options.json ? `${JSON.stringify({ replay: runName(result.state), nothing_to_do: true, summary: result.state.summary })}\n` : `${message}\n`);
        return;
      }
      const seconds = (Date.now() - startedAt) / 1000;
      if (options.json) process.stdout.write(`${JSON.stringify({ ...result.summary, seconds })}\n`);
      else process.stdout.write(`${formatSummary(result.summary)}  took ${seconds.toFixed(1)} s\n`);
    });
}
