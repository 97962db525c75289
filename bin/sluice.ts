#!/usr/bin/env -S node --max-semi-space-size=8 --max-old-space-size=2000
/**
 * sluice: the operator's command line. Results go to stdout, progress to
 * stderr; a failure prints one line, its code and what to do, and exits
 * non-zero. Every command exits once it is done, even if a client library
 * left a socket or timer behind (kafkajs can, after a broker outage).
 */
import { Command } from 'commander';
import { errorMessage, isSluiceError } from '../lib/errors.ts';

const program = new Command()
  .name('sluice')
  .description('Run AI decisions in production on Apache Kafka')
  .showHelpAfterError()
  .enablePositionalOptions();

// The long-running processors load only their own command, so a stage or
// sink process keeps the rest (HTTP servers, PDF extraction, the model store,
// the monitor) out of its memory; every other command loads them all.
const command = process.argv[2] ?? '';
if (command === 'run') {
  (await import('../cli/pipeline.ts')).registerPipelineCommands(program);
} else if (command === 'sink') {
  (await import('../cli/clickhouse.ts')).registerClickHouseCommands(program);
} else {
  (await import('../cli/stack.ts')).registerStackCommands(program);
  (await import('../cli/pipeline.ts')).registerPipelineCommands(program);
  (await import('../cli/demo.ts')).registerDemoCommand(program);
  (await import('../cli/clickhouse.ts')).registerClickHouseCommands(program);
  (await import('../cli/model.ts')).registerModelCommands(program);
  (await import('../cli/status.ts')).registerStatusCommand(program);
  (await import('../cli/dlq.ts')).registerDeadLetterCommands(program);
  (await import('../cli/ingest.ts')).registerIngestCommands(program);
  (await import('../cli/review.ts')).registerReviewCommands(program);
  (await import('../cli/replay.ts')).registerReplayCommand(program);
  (await import('../cli/monitor.ts')).registerMonitorCommand(program);
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  const code = isSluiceError(error) ? error.code : 'UNEXPECTED';
  process.stderr.write(`sluice: ${code}: ${errorMessage(error).replaceAll('\n', ' ')}\n`);
  // A stack trace only for what sluice did not foresee: a defect to report.
  if (!isSluiceError(error) && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  process.exitCode = 1;
}
process.exit(process.exitCode ?? 0);
