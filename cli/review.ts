/**
 * `sluice review …`: the review service (serve) and its accounts
 * (add-reviewer, list-reviewers). Accounts live on a compacted topic that
 * every instance follows; a password is printed once, when it is created,
 * and only its scrypt hash is stored.
 */
import type { Command } from 'commander';
import { ensureTopics, openProducer } from '../connectors/kafka/admin.ts';
import { followTopic } from '../connectors/kafka/follow.ts';
import { SluiceError } from '../lib/errors.ts';
import { createCommandLogger } from '../lib/log.ts';
import { AccountBook, type AccountRecord, encodeJson, hashPassword, newPassword, ROLES, type Role, USERNAME_FORMAT } from '../review/accounts.ts';
import { type ReviewConfig, reviewConfigFromEnv } from '../review/config.ts';
import { serveReview } from '../review/server.ts';
import { compactedTopicSpec } from '../review/topics.ts';

async function readAccounts(config: ReviewConfig): Promise<AccountBook> {
  const book = new AccountBook();
  const follower = await followTopic({
    brokers: config.connections.kafkaBrokers,
    topic: config.reviewersTopic,
    clientId: 'sluice-review-cli',
    logger: createCommandLogger({ component: 'review-cli' }, 'error'),
    onMessage: (m) => m.key !== null && book.apply(m.key, m.value),
  });
  try {
    await follower.caughtUp;
  } finally {
    await follower.stop();
  }
  return book;
}

/** Creates an account and returns its one-time password (the first sign-in must replace it); an existing name is refused. */
export async function addReviewer(config: ReviewConfig, username: string, role: Role, createdBy: string): Promise<string> {
  if (!USERNAME_FORMAT.test(username)) {
    throw new SluiceError('CONFIG_INVALID', `"${username}" is not a user name: 2-64 characters, a lower-case letter first, then lower-case letters, digits, ".", "_" or "-".`);
  }
  const brokers = config.connections.kafkaBrokers;
  await ensureTopics(brokers, [compactedTopicSpec(config.reviewersTopic)]);
  if ((await readAccounts(config)).get(username)) throw new SluiceError('CONFIG_INVALID', `A reviewer named ${username} exists already; pick another name.`);
  const password = newPassword();
  const record: AccountRecord = { username, role, password_hash: await hashPassword(password), created_at: Date.now(), created_by: createdBy, must_change_password: true };
  const producer = await openProducer(brokers, 'sluice-review-cli');
  try {
    await producer.send(config.reviewersTopic, [{ key: username, value: encodeJson(record) }]);
  } finally {
    await producer.close();
  }
  return password;
}

export function registerReviewCommands(program: Command): void {
  const review = program.command('review').description('human review: the review web UI and API, and reviewer accounts');

  review
    .command('serve')
    .description('serve the review UI and API for every pipeline (SLUICE_REVIEW_PIPELINES narrows it), until SIGTERM')
    .option('--port <port>', 'port to listen on (SLUICE_REVIEW_PORT, default 8090; 0 picks a free one)')
    .action(async (options: { port?: string }) => {
      const port = options.port === undefined ? undefined : Number(options.port);
      if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65_535)) throw new SluiceError('CONFIG_INVALID', `--port must be a port number (0-65535), got ${JSON.stringify(options.port)}.`);
      const config = reviewConfigFromEnv(process.env, port === undefined ? {} : { port });
      const running = await serveReview({ config, handleSignals: true });
      process.stderr.write(`review service on ${running.url}\n`);
      await running.done;
    });

  review
    .command('add-reviewer')
    .description('create a reviewer account and print its one-time password (shown once; only its scrypt hash is stored)')
    .argument('<name>', 'user name: lower-case letters, digits, . _ -')
    .option('--role <role>', 'reviewer | admin', 'reviewer')
    .option('--json', 'print {"username","role","password"}')
    .action(async (name: string, options: { role: string; json?: boolean }) => {
      if (!(ROLES as readonly string[]).includes(options.role)) throw new SluiceError('CONFIG_INVALID', `--role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(options.role)}.`);
      const config = reviewConfigFromEnv();
      const password = await addReviewer(config, name, options.role as Role, process.env.USER ?? 'sluice-cli');
      if (options.json) process.stdout.write(`${JSON.stringify({ username: name, role: options.role, password })}\n`);
      else process.stdout.write(`reviewer ${name} (${options.role}) created; one-time password (shown once; the first sign-in replaces it): ${password}\n`);
    });

  review
    .command('list-reviewers')
    .description('list reviewer accounts (names and roles, never hashes)')
    .action(async () => {
      for (const account of (await readAccounts(reviewConfigFromEnv())).list()) {
        process.stdout.write(`${account.username}\t${account.role}\tcreated ${new Date(account.created_at).toISOString()} by ${account.created_by}\n`);
      }
    });
}
