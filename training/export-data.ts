/**
 * Writes the signup-risk training data as CSV: the FEATURE_NAMES columns as
 * computed by the serving code's own `featuresOf`, then `label`, `risk` (the
 * ground truth, for reference only; never a feature) and `occurred_at_ms`.
 * Features are computed on the normalized payload, the form the score stage
 * sees after validation. Beside the CSV, `<out>.meta.json` records how it was
 * generated, for the model card.
 *
 *   node training/export-data.ts --seed 1 --count 100000 --out training/data/signups.csv
 */
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { generateSignups } from '../pipelines/signup-risk/generator.ts';
import { FEATURE_NAMES, featuresOf } from '../pipelines/signup-risk/features.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    count: { type: 'string', default: '100000' },
    start: { type: 'string', default: '2026-08-01T00:00:00Z' },
    'spacing-ms': { type: 'string', default: '60000' },
    out: { type: 'string', default: 'training/data/signups.csv' },
  },
  strict: true,
});

function integer(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`--${name} must be an integer, got '${text}'`);
  return value;
}

async function main(): Promise<void> {
  const seed = integer('seed', values.seed);
  const count = integer('count', values.count);
  const spacingMs = integer('spacing-ms', values['spacing-ms']);
  const startMs = Date.parse(values.start);
  if (Number.isNaN(startMs)) throw new Error(`--start must be an RFC 3339 timestamp, got '${values.start}'`);

  await mkdir(dirname(values.out), { recursive: true });
  const out = createWriteStream(values.out);
  out.write(`${[...FEATURE_NAMES, 'label', 'risk', 'occurred_at_ms'].join(',')}\n`);
  let positives = 0;
  for (const signup of generateSignups({ seed, count, startMs, spacingMs })) {
    positives += signup.label;
    const line = `${[...featuresOf(signup.payload), signup.label, signup.risk, signup.occurredAtMs].join(',')}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  const meta = { generator: 'pipelines/signup-risk/generator.ts', seed, count, startMs, spacingMs, positives, features: FEATURE_NAMES };
  await writeFile(`${values.out}.meta.json`, `${JSON.stringify(meta, null, 2)}\n`);
  process.stderr.write(`wrote ${count} rows (${positives} risky) to ${values.out}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`export-data failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
