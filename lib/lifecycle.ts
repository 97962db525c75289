/**
 * The lifecycle every long-running sluice process shares: resources are
 * registered as they are opened and closed in reverse order, once; SIGTERM or
 * SIGINT (or stop()) closes them and resolves `done`.
 */
import type { Logger } from './log.ts';

export class Resources {
  private readonly closers: Array<() => Promise<unknown>> = [];
  private readonly logger: Logger;

  constructor(logger: Logger) {
    this.logger = logger;
  }

  /** Registers how to close something just opened. */
  add(closer: () => Promise<unknown>): void {
    this.closers.push(closer);
  }

  /** Closes everything in reverse order of opening; a failing close is logged, not thrown. */
  async close(): Promise<void> {
    while (this.closers.length > 0) {
      const closer = this.closers.pop()!;
      await closer().catch((error) => this.logger.warn({ err: error }, 'close failed'));
    }
  }
}

export interface Running {
  /** Closes everything; idempotent, resolves when closed. */
  stop(): Promise<void>;
  /** Resolves once stopped, by a signal or by stop(). */
  done: Promise<void>;
}

export function keepRunning(options: {
  resources: Resources;
  logger: Logger;
  /** What stopping means for this process, for the log ("finishing the current batch"). */
  stopping: string;
  handleSignals: boolean;
  /** Called first on stop, before anything is closed. */
  onStop?(): void;
  /**
   * A process (not a test) exits by itself this long after a stop began, even
   * if closing hangs (a client retrying a broker that is gone): an orchestrator
   * should never have to wait out its grace period and kill it.
   */
  shutdownTimeoutMs?: number;
}): Running {
  let stopped: Promise<void> | undefined;
  let markDone: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    markDone = resolve;
  });
  const stop = () => {
    options.onStop?.();
    stopped ??= (async () => {
      options.logger.info(`stopping: ${options.stopping}`);
      if (options.shutdownTimeoutMs !== undefined) {
        const timeoutMs = options.shutdownTimeoutMs;
        setTimeout(() => {
          options.logger.error({ timeoutMs }, 'shutdown did not finish in time; exiting anyway (nothing uncommitted is lost: it is redelivered)');
          process.exit(1);
        }, timeoutMs).unref();
      }
      await options.resources.close();
      options.logger.info('stopped');
      markDone();
    })();
    return stopped;
  };
  if (options.handleSignals) {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void stop());
  }
  return { stop, done };
}
