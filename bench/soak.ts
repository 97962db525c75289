/**
 * The memory soak: the three stages of a fresh pipeline instance, each its own
 * process, under a steady stream for several minutes, with every stage's
 * resident set size (RSS, from /proc) and V8 heap in use (its /metrics) sampled as it runs. Prints the curve per
 * stage and whether it keeps growing in the second half; writes JSON.
 *
 *   npm run soak -- [--minutes 10] [--rate 3000] [--pipeline signup-risk] [--json FILE]
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pipelineTopics, registerPipelineSchemas } from '../cli/pipeline.ts';
import { STAGES, spawnStage, type StageProcess } from '../cli/processes.ts';
import { Outcomes, produceStream } from '../cli/traffic.ts';
import { deleteTopics, ensureTopics } from '../connectors/kafka/admin.ts';
import { SchemaCatalog } from '../connectors/registry/registry.ts';
import { stackPaths } from '../deploy/local/stack.ts';
import { pipelineTopicNames } from '../lib/contracts.ts';
import { createLogger } from '../lib/log.ts';
import { connectionsFromEnv } from '../lib/settings.ts';
import { pipelineByName } from '../pipelines/registry.ts';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '3000' },
    pipeline: { type: 'string', default: 'signup-risk' },
    'sample-seconds': { type: 'string', default: '15' },
    json: { type: 'string' },
  },
});
const minutes = Number(args.minutes);
const rate = Number(args.rate);
const sampleMs = Number(args['sample-seconds']) * 1000;
const connections = connectionsFromEnv();
const kind = pipelineByName(args.pipeline).plugin;
const name = `${kind.kind}-soak-${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
const started = Date.now();
const say = (line: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${line}\n`);

const rssMiB = (pid: number): number => {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Math.round(Number(match[1]) / 102.4) / 10 : Number.NaN;
};

await ensureTopics(connections.kafkaBrokers, pipelineTopics(name));
await registerPipelineSchemas(name, connections.schemaRegistryUrl);
// Each stage serves /metrics on a port of its own, so the soak can read its V8 heap beside its RSS.
const METRICS_BASE_PORT = 19_464;
const stages: StageProcess[] = STAGES.map((stage, i) =>
  spawnStage({ pipeline: name, stage, env: { SLUICE_METRICS_PORT: String(METRICS_BASE_PORT + i) }, logFile: join(stackPaths().logs, 'soak', `${name}.${stage}.log`) }),
);
const samples: Array<{ seconds: number; rss_mib: Record<string, number>; heap_used_mib: Record<string, number> }> = [];

/** nodejs_heap_size_used_bytes from a stage's /metrics, in MiB. */
async function heapUsedMiB(port: number): Promise<number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2_000) })).text();
    const match = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})? ([\d.e+]+)$/m.exec(text);
    return match ? Math.round(Number(match[1]) / 104_857.6) / 10 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}
const logger = createLogger({ component: 'soak' }, 'warn');
let outcomes: Outcomes | undefined;
try {
  await Promise.all(stages.map((s) => s.running));
  outcomes = await Outcomes.follow({ brokers: connections.kafkaBrokers, pipeline: name, catalog: new SchemaCatalog(connections.schemaRegistryUrl), idPrefix: 'soak', logger });
  const sample = async () => {
    const rss = Object.fromEntries(stages.map((s) => [s.name, rssMiB(s.child.pid!)]));
    const heap = Object.fromEntries(await Promise.all(stages.map(async (s, i) => [s.name, await heapUsedMiB(METRICS_BASE_PORT + i)] as const)));
    samples.push({ seconds: Math.round((Date.now() - started) / 1000), rss_mib: rss, heap_used_mib: heap });
    say(`rss MiB ${JSON.stringify(rss)} heap used MiB ${JSON.stringify(heap)} decided ${outcomes!.decided.size}`);
  };
  await sample();
  const timer = setInterval(() => void sample(), sampleMs);
  say(`producing ${rate}/s for ${minutes} min into ${name}`);
  const stream = await produceStream({
    brokers: connections.kafkaBrokers,
    pipeline: name,
    generator: kind.generator,
    count: Math.round(rate * minutes * 60),
    ratePerSec: rate,
    badEvery: 100,
    idPrefix: 'soak',
    seed: 3,
    maxMessageBytes: kind.maxMessageBytes,
  });
  clearInterval(timer);
  await sample();
  const half = samples.filter((s) => s.seconds >= (minutes * 60) / 2);
  const growth = Object.fromEntries(
    stages.map((s) => {
      const first = half[0]?.rss_mib[s.name] ?? Number.NaN;
      const last = half[half.length - 1]?.rss_mib[s.name] ?? Number.NaN;
      const peak = Math.max(...samples.map((x) => x.rss_mib[s.name] ?? 0));
      const heapPeak = Math.max(...samples.map((x) => x.heap_used_mib[s.name] ?? 0));
      return [s.name, { second_half_start_mib: first, end_mib: last, second_half_growth_mib: Math.round((last - first) * 10) / 10, peak_mib: peak, heap_used_peak_mib: heapPeak }];
    }),
  );
  const result = { pipeline: name, minutes, rate_per_s: rate, produced: stream.valid + stream.bad, decided: outcomes.decided.size, samples, growth };
  process.stdout.write(`${JSON.stringify(growth, null, 2)}\n`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(result, null, 2)}\n`);
} finally {
  await outcomes?.stop();
  for (const stage of stages) stage.kill('SIGTERM');
  await Promise.all(stages.map((s) => s.exited));
  await deleteTopics(connections.kafkaBrokers, pipelineTopicNames(name)).catch(() => {});
}
process.exit(0);
