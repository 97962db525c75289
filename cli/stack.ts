import type { Command } from 'commander';
import { type ServiceStatus, stackDown, stackPaths, stackReset, stackStatus, stackUp } from '../deploy/local/stack.ts';
import { SluiceError } from '../lib/errors.ts';
import { connectionsFromEnv } from '../lib/settings.ts';

function stackOptions() {
  const connections = connectionsFromEnv();
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  return {
    brokers: connections.kafkaBrokers,
    registryUrl: connections.schemaRegistryUrl,
    clickhouseUrl: connections.clickhouseUrl,
    progress,
  };
}

export function printStatus(statuses: ServiceStatus[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(statuses, null, 2)}\n`);
    return;
  }
  const rows = statuses.map((s) => [s.name, s.address, s.answering ? 'up' : 'down', s.pid === null ? '-' : String(s.pid)]);
  const header = ['SERVICE', 'ADDRESS', 'STATUS', 'PID'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}\n`);
}

export function registerStackCommands(program: Command): void {
  const stack = program.command('stack').description('the local stack: Kafka, the schema registry and ClickHouse as plain processes');

  stack
    .command('up')
    .description('download (once), start and wait for every service; idempotent')
    .option('--json', 'print the status as JSON')
    .action(async (options: { json?: boolean }) => {
      const started = Date.now();
      const statuses = await stackUp(stackOptions());
      process.stderr.write(`stack up in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      printStatus(statuses, options.json === true);
    });

  stack
    .command('down')
    .description('stop every service the stack started')
    .action(async () => {
      await stackDown(stackOptions());
    });

  stack
    .command('status')
    .description('each service, its address and whether it answers; exit 1 if any is down')
    .option('--json', 'print the status as JSON')
    .action(async (options: { json?: boolean }) => {
      const statuses = await stackStatus(stackOptions());
      printStatus(statuses, options.json === true);
      if (statuses.some((s) => !s.answering)) process.exitCode = 1;
    });

  stack
    .command('reset')
    .description('delete the stack data (topics, schemas, tables); keeps downloads; the stack must be down')
    .action(async () => {
      const statuses = await stackStatus(stackOptions());
      if (statuses.some((s) => s.answering)) {
        throw new SluiceError('STACK_SERVICE_FAILED', 'The stack is running; run `sluice stack down` first.');
      }
      stackReset(stackPaths());
    });
}
