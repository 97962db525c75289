/**
 * `sluice clickhouse migrate`: creates database `sluice`, applies the
 * migrations not yet recorded in `sluice.schema_migrations` (in version
 * order, each recorded once all its statements ran), and sets up the
 * read-only analyst user. Idempotent: run it as often as you like.
 *
 * The analyst user (`sluice_analyst`) may SELECT from `sluice` and nothing else:
 * - ClickHouse with SQL access control (system.users exists; 20.x and later):
 *   `CREATE USER IF NOT EXISTS … ; GRANT SELECT ON sluice.* TO …`. The user
 *   running migrate needs access_management (docker: CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT=1).
 * - ClickHouse 18.16 has no SQL user management: the user is declared in
 *   users.xml (deploy/local/clickhouse/users.xml) with `readonly = 1` and
 *   `allow_databases = sluice`; migrate checks that it can log in and read.
 *   18.16 always lets every user read the `system` database (it is exempt from
 *   allow_databases); it cannot read any other database or write anywhere.
 */
import { errorMessage, SluiceError } from '../../lib/errors.ts';
import { type ClickHouseClient, clickHouseError, createClickHouse, queryRows, quote } from './client.ts';
import {
  BOOTSTRAP_STATEMENTS,
  type ColumnAddition,
  columnAddition,
  DATABASE,
  LATEST_SCHEMA_VERSION,
  MIGRATIONS,
  type Migration,
  migrationChecksum,
  TABLES,
} from './schema.ts';

export const ANALYST_DEFAULTS = {
  user: 'sluice_analyst',
  /** The local stack's users.xml declares this password; set SLUICE_ANALYST_PASSWORD anywhere else. */
  password: 'sluice_analyst',
} as const;

export interface AnalystStatus {
  user: string;
  /** `created`: by SQL on this run or before; `users.xml`: declared in the server's config (18.16). */
  managedBy: 'sql' | 'users.xml';
  detail: string;
}

export interface MigrateResult {
  serverVersion: string;
  applied: Array<{ version: number; name: string }>;
  alreadyApplied: Array<{ version: number; name: string }>;
  analyst: AnalystStatus;
}

async function run(client: ClickHouseClient, query: string, what: string): Promise<void> {
  try {
    await client.command({ query });
  } catch (error) {
    throw clickHouseError(error, what);
  }
}

async function select<T>(client: ClickHouseClient, query: string, what: string): Promise<T[]> {
  try {
    return await queryRows<T>(client, query);
  } catch (error) {
    throw clickHouseError(error, what);
  }
}

/** The type of a table's column as system.columns spells it; undefined when there is no such column. */
async function columnType(client: ClickHouseClient, { table, column }: ColumnAddition): Promise<string | undefined> {
  const [database, name] = table.split('.') as [string, string];
  const rows = await select<{ type: string }>(
    client,
    `SELECT type FROM system.columns WHERE database = ${quote(database)} AND table = ${quote(name)} AND name = ${quote(column)}`,
    `looking up column ${column} of ${table}`,
  );
  return rows[0]?.type;
}

/**
 * Runs one migration statement. A column addition that fails because the
 * column is already there with the same type (an earlier migrate stopped
 * before recording its version, or another migrate is running) is done: 18.16
 * has no ADD COLUMN IF NOT EXISTS, and the error code differs between versions.
 */
export async function runMigrationStatement(client: ClickHouseClient, statement: string, what: string): Promise<void> {
  try {
    await client.command({ query: statement });
  } catch (error) {
    const addition = columnAddition(statement);
    if (addition === undefined) throw clickHouseError(error, what);
    const existing = await columnType(client, addition).catch(() => undefined);
    if (existing === addition.type) return;
    if (existing !== undefined) {
      throw new SluiceError(
        'CLICKHOUSE_SCHEMA_OUTDATED',
        `${what}: ${addition.table}.${addition.column} exists as ${existing}, not ${addition.type}. It was created by hand or by other code: drop or rename it, then run migrate again.`,
        { cause: error },
      );
    }
    throw clickHouseError(error, what);
  }
}

export async function serverVersion(client: ClickHouseClient): Promise<string> {
  const [row] = await select<{ v: string }>(client, 'SELECT version() AS v', 'reading the server version');
  return row?.v ?? 'unknown';
}

/** True when the server manages users by SQL (CREATE USER, GRANT): it has system.users. */
export async function hasSqlAccessControl(client: ClickHouseClient): Promise<boolean> {
  const rows = await select<{ n: string }>(
    client,
    "SELECT count() AS n FROM system.tables WHERE database = 'system' AND name = 'users'",
    'checking for SQL access control',
  );
  return Number(rows[0]?.n ?? 0) > 0;
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

async function appliedMigrations(client: ClickHouseClient): Promise<Map<number, AppliedRow>> {
  const exists = await select<{ n: string }>(
    client,
    `SELECT count() AS n FROM system.tables WHERE database = ${quote(DATABASE)} AND name = 'schema_migrations'`,
    'looking for the migrations table',
  );
  if (Number(exists[0]?.n ?? 0) === 0) return new Map();
  // GROUP BY: two concurrent migrates may both have recorded a version (the table collapses them later).
  const rows = await select<AppliedRow>(
    client,
    `SELECT version, any(name) AS name, any(checksum) AS checksum FROM ${TABLES.migrations} GROUP BY version ORDER BY version`,
    'reading applied migrations',
  );
  return new Map(rows.map((row) => [Number(row.version), { ...row, version: Number(row.version) }]));
}

function checkNotEdited(migration: Migration, applied: AppliedRow): void {
  const checksum = migrationChecksum(migration);
  if (applied.checksum !== checksum) {
    throw new SluiceError(
      'CLICKHOUSE_SCHEMA_OUTDATED',
      `Migration ${migration.version} (${migration.name}) was applied with checksum ${applied.checksum} but the code now has ${checksum}. ` +
        'Applied migrations must never be edited: revert the edit and add a new migration instead.',
    );
  }
}

/** Migrations this server has not applied yet; refuses if an applied one was edited since. */
export async function pendingMigrations(client: ClickHouseClient): Promise<Migration[]> {
  const applied = await appliedMigrations(client);
  const pending: Migration[] = [];
  for (const migration of MIGRATIONS) {
    const row = applied.get(migration.version);
    if (row) checkNotEdited(migration, row);
    else pending.push(migration);
  }
  return pending;
}

/** Throws CLICKHOUSE_SCHEMA_OUTDATED, saying what to run, unless every migration is applied. */
export async function assertSchemaCurrent(client: ClickHouseClient): Promise<void> {
  const pending = await pendingMigrations(client);
  if (pending.length > 0) {
    throw new SluiceError(
      'CLICKHOUSE_SCHEMA_OUTDATED',
      `ClickHouse lacks schema version(s) ${pending.map((m) => m.version).join(', ')} of ${LATEST_SCHEMA_VERSION}. Run: npx sluice clickhouse migrate`,
    );
  }
}

async function ensureAnalyst(
  client: ClickHouseClient,
  options: { url: string; user: string; password: string },
): Promise<AnalystStatus> {
  const { user, password } = options;
  if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(user)) {
    throw new SluiceError('CONFIG_INVALID', `Analyst user name "${user}" must be letters, digits and underscores.`);
  }
  if (await hasSqlAccessControl(client)) {
    const statements = [
      `CREATE USER IF NOT EXISTS ${user} IDENTIFIED WITH sha256_password BY ${quote(password)} DEFAULT DATABASE ${DATABASE}`,
      `GRANT SELECT ON ${DATABASE}.* TO ${user}`,
    ];
    for (const statement of statements) {
      try {
        await client.command({ query: statement });
      } catch (error) {
        const classified = clickHouseError(error, `creating the analyst user ${user}`);
        if (classified.code !== 'CLICKHOUSE_ACCESS_DENIED') throw classified;
        throw new SluiceError(
          'CLICKHOUSE_ACCESS_DENIED',
          `The tables are migrated, but this ClickHouse user may not create users (${errorMessage(error).split('\n')[0]}). ` +
            'Run migrate as a user with access_management (docker: CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT=1), ' +
            `or have an administrator run:\n  ${statements.join(';\n  ').replace(quote(password), "'<password>'")};`,
          { cause: error },
        );
      }
    }
    return { user, managedBy: 'sql', detail: `SELECT on ${DATABASE}.* only` };
  }
  // 18.16: the user lives in users.xml; check it exists and can read the database.
  const analyst = createClickHouse({ url: options.url, username: user, password, database: 'default' });
  try {
    await analyst.query({ query: `SELECT count() FROM ${TABLES.migrations}`, format: 'JSONEachRow' }).then((r) => r.json());
  } catch (error) {
    throw new SluiceError(
      'CLICKHOUSE_ACCESS_DENIED',
      `The tables are migrated, but the analyst user ${user} cannot read ${DATABASE} (${errorMessage(error).split('\n')[0]}). ` +
        'This ClickHouse has no SQL user management: declare the user in users.xml with <readonly>1</readonly> and ' +
        `<allow_databases><database>${DATABASE}</database></allow_databases> (see deploy/local/clickhouse/users.xml), and set SLUICE_ANALYST_PASSWORD to its password.`,
      { cause: error },
    );
  } finally {
    await analyst.close();
  }
  return { user, managedBy: 'users.xml', detail: `declared in users.xml: readonly, allow_databases=${DATABASE}` };
}

export async function migrate(
  client: ClickHouseClient,
  options: { url: string; analystUser?: string; analystPassword?: string; now?: () => number },
): Promise<MigrateResult> {
  const version = await serverVersion(client);
  for (const statement of BOOTSTRAP_STATEMENTS) await run(client, statement, `creating ${DATABASE}`);
  const applied = await appliedMigrations(client);
  const done: Pick<MigrateResult, 'applied' | 'alreadyApplied'> = { applied: [], alreadyApplied: [] };
  for (const migration of MIGRATIONS) {
    const row = applied.get(migration.version);
    if (row) {
      checkNotEdited(migration, row);
      done.alreadyApplied.push({ version: migration.version, name: migration.name });
      continue;
    }
    for (const [i, statement] of migration.statements.entries()) {
      await runMigrationStatement(client, statement, `migration ${migration.version} statement ${i + 1}`);
    }
    const appliedAt = Math.floor((options.now?.() ?? Date.now()) / 1000);
    await client
      .insert({
        table: TABLES.migrations,
        format: 'JSONEachRow',
        values: [{ version: migration.version, name: migration.name, checksum: migrationChecksum(migration), applied_at: appliedAt }],
      })
      .catch((error: unknown) => {
        throw clickHouseError(error, `recording migration ${migration.version}`);
      });
    done.applied.push({ version: migration.version, name: migration.name });
  }
  const analyst = await ensureAnalyst(client, {
    url: options.url,
    user: options.analystUser ?? ANALYST_DEFAULTS.user,
    password: options.analystPassword ?? ANALYST_DEFAULTS.password,
  });
  return { serverVersion: version, ...done, analyst };
}
