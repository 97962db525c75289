#!/usr/bin/env -S node --disable-warning=TimeoutNegativeWarning --max-semi-space-size=16
/**
 * sluice: the operator's command line. Results go to stdout, progress to
 * stderr; a failure prints one line, its code and what to do, and exits
 * non-zero. Every command exits once it is done, even if a client library
 * left a socket or timer behind (kafkajs can, after a broker outage).
 */
import { Command } from 'commander';
import { registerClickHouseCommands } from '../cli/clickhouse.ts';
import { registerDemoCommand } from '../cli/demo.ts';
import { registerDeadLetterCommands } from '../cli/dlq.ts';
import { registerModelCommands } from '../cli/model.ts';
import { registerPipelineCommands } from '../cli/pipeline.ts';
import { registerStackCommands } from '../cli/stack.ts';
import { registerStatusCommand } from '../cli/status.ts';
import { errorMessage, isSluiceError } from '../lib/errors.ts';

const program = new Command()
  .name('sluice')
  .description('Run AI decisions in production on Apache Kafka')
  .showHelpAfterError()
  .enablePositionalOptions();

registerStackCommands(program);
registerPipelineCommands(program);
registerDemoCommand(program);
registerClickHouseCommands(program);
registerModelCommands(program);
registerStatusCommand(program);
registerDeadLetterCommands(program);
// The services and tools (HTTP servers, PDF extraction, replay, monitor) are
// loaded for every command but the long-running processors, which keep them
// out of their memory.
const PROCESSOR_COMMANDS = new Set(['run', 'sink']);
if (!PROCESSOR_COMMANDS.has(process.argv[2] ?? '')) {
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
