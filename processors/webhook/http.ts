/**
 * One POST to the receiver with Node's own fetch (undici: keep-alive
 * connections, reused across requests), turned into an AttemptResult. It never
 * throws: a timeout, a refused connection and the sink stopping each come back
 * as their own kind, for the retry policy to judge.
 */
import type { AttemptResult } from './policy.ts';

/** The most of a receiver's answer that is read: it is only drained, so the connection can be reused. */
const MAX_ANSWER_BYTES = 65_536;

/**
 * A short, bounded name for a failed exchange (it becomes a metric label and
 * `dlq.error.code`). undici wraps the socket error:
 * TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }); a request
 * fetch itself refuses (a port on the Fetch standard's block list) has only a
 * message ('bad port').
 */
function systemCode(error: unknown): string {
  let current: unknown = error;
  let innermost = '';
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z0-9_]{2,40}$/.test(code)) return code;
    const message = (current as { message?: unknown }).message;
    if (typeof message === 'string') innermost = message;
    current = (current as { cause?: unknown }).cause;
  }
  return /^[a-z ]{2,40}$/i.test(innermost) ? innermost.replaceAll(' ', '_') : 'UNKNOWN';
}

async function drain(response: Response): Promise<void> {
  if (!response.body) return;
  const reader = response.body.getReader();
  let read = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      read += value.byteLength;
      if (read > MAX_ANSWER_BYTES) {
        await reader.cancel();
        return;
      }
    }
  } catch {
    // An answer cut short changes nothing: its status is known.
  }
}

/**
 * POSTs `body`; `timeoutMs` bounds the whole exchange, answer included.
 * Aborting `stop` abandons the request in flight.
 */
export async function post(args: { url: string; headers: Record<string, string>; body: string; timeoutMs: number; stop: AbortSignal }): Promise<AttemptResult> {
  if (args.stop.aborted) return { kind: 'abandoned' };
  const timeout = AbortSignal.timeout(args.timeoutMs);
  const signal = AbortSignal.any([timeout, args.stop]);
  try {
    const response = await fetch(args.url, { method: 'POST', headers: args.headers, body: args.body, redirect: 'manual', signal });
    await drain(response);
    return { kind: 'response', status: response.status, retryAfter: response.headers.get('retry-after') };
  } catch (error) {
    if (args.stop.aborted) return { kind: 'abandoned' };
    if (timeout.aborted) return { kind: 'timeout' };
    return { kind: 'network', code: systemCode(error) };
  }
}
