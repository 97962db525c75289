/**
 * The review service as a fastify application, built from its store and not
 * listening (server.ts listens). The web UI (ui/, static files) uses the same
 * JSON API that /openapi.json describes:
 *
 * - POST   /api/session                                  sign in: session cookie + {"csrf_token"}
 * - GET    /api/session, DELETE /api/session             who am I; sign out
 * - POST   /api/session/password                         replace the password (first: the one-time one)
 * - GET    /api/pipelines                                the pipelines served, their decisions and fields
 * - GET    /api/pipelines/{p}/items?status=open          the queue, soonest due first
 * - GET    /api/pipelines/{p}/items/{item_id}
 * - POST   /api/pipelines/{p}/items/{item_id}/claim      a lease (10 min); 409 if another reviewer holds it
 * - POST   /api/pipelines/{p}/items/{item_id}/release
 * - POST   /api/pipelines/{p}/items/{item_id}/resolve    {"decision","reason",…}; 409 if already resolved
 * - GET    /api/reviewers, POST /api/reviewers           admins only
 *
 * Checks, in order: session (401), CSRF token on every state-changing request
 * (403), role (403), pipeline (404), body (400), item (404, 409).
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Logger } from '../lib/log.ts';
import { ROLES, type Role, type SessionRecord, verifyPassword } from './accounts.ts';
import { isReviewError, ReviewError } from './errors.ts';
import * as schemas from './schemas.ts';
import type { ReviewStore } from './store.ts';

export const SESSION_COOKIE = 'sluice_review_session';

const UI_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

/** What a session whose password is still the one-time password may do. */
const PASSWORD_CHANGE_ROUTES = new Set(['GET /api/session', 'DELETE /api/session', 'POST /api/session/password']);

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export interface ReviewAppDeps {
  store: ReviewStore;
  logger: Logger;
  cookieSecure: boolean;
  sessionMs: number;
  version?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    review?: { session: SessionRecord; token: string };
  }
}

function cookieOf(request: FastifyRequest, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return decodeURIComponent(part.slice(at + 1).trim());
  }
  return undefined;
}

const sameText = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export async function buildReviewApp(deps: ReviewAppDeps): Promise<FastifyInstance> {
  const { store, logger } = deps;
  const ui = Object.fromEntries(Object.entries(UI_FILES).map(([path, { file, type }]) => [path, { body: readFileSync(new URL(`./ui/${file}`, import.meta.url)), type }]));

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({ name: 'sluice_review_requests_total', help: 'API requests by route and status', labelNames: ['route', 'status'], registers: [registry] });
  const actions = new Counter({ name: 'sluice_review_actions_total', help: 'Claims, resolutions and expiries by pipeline and outcome', labelNames: ['pipeline', 'action', 'outcome'], registers: [registry] });
  new Gauge({
    name: 'sluice_review_items',
    help: 'Review items by pipeline and status, as this instance has read them',
    labelNames: ['pipeline', 'status'],
    registers: [registry],
    collect() {
      for (const [name, desk] of store.desks) for (const [status, count] of Object.entries(desk.queue.counts())) this.set({ pipeline: name, status }, count);
    },
  });
  new Gauge({
    name: 'sluice_review_overdue_items',
    help: 'Open items past their due time (the SLA sweep expires them)',
    labelNames: ['pipeline'],
    registers: [registry],
    collect() {
      for (const [name, desk] of store.desks) this.set({ pipeline: name }, desk.queue.overdue(store.now()).length);
    },
  });

  new Counter({
    name: 'sluice_review_expired_total',
    help: 'Items that ran past their due time and expired to the fallback decision (SLA breaches), by this instance',
    labelNames: ['pipeline'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [pipeline, count] of store.expiredByPipeline) this.inc({ pipeline }, count);
    },
  });
  const signInFailures = new SignInThrottle();

  const app = Fastify({ logger: false, bodyLimit: 64 * 1_024, forceCloseConnections: 'idle', return503OnClosing: true });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'sluice review API',
        version: deps.version ?? '1',
        description:
          'Human review of sluice decisions. Sign in with POST /api/session; the session is an HttpOnly cookie, and every state-changing request must carry the returned csrf_token in the x-csrf-token header. Every error body is {"error":{"code","message"}}; match on code.',
      },
      components: { securitySchemes: { session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE }, csrf: { type: 'apiKey', in: 'header', name: 'x-csrf-token' } } },
    },
  });

  const send = (reply: FastifyReply, error: ReviewError) => reply.code(error.status).send(error.body());

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (isReviewError(error)) return send(reply, error);
    if (error.validation) return send(reply, new ReviewError('INVALID_REQUEST', `The request is not valid: ${error.message}. See /openapi.json.`));
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return send(reply, new ReviewError('INVALID_REQUEST', `The request could not be read: ${error.message}`));
    }
    logger.error({ err: error, route: request.routeOptions.url }, 'request failed unexpectedly');
    return send(reply, new ReviewError('INTERNAL', 'The review service failed to handle this request; reload, and report it if it persists.'));
  });
  app.setNotFoundHandler((request, reply) => send(reply, new ReviewError('NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}; see /openapi.json.`)));
  app.addHook('onSend', async (_request, reply) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) if (!reply.hasHeader(name)) reply.header(name, value);
  });
  app.addHook('onResponse', async (request, reply) => {
    requests.inc({ route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });

  /** 401 without a valid session; 403 without the CSRF token on a state-changing request, or without the role. */
  const authenticate = (role?: Role) => async (request: FastifyRequest) => {
    if (!store.ready().ready) throw new ReviewError('NOT_READY', `The review service is starting (${store.ready().detail}); retry in a moment.`);
    const token = cookieOf(request, SESSION_COOKIE);
    const session = token === undefined ? undefined : store.sessions.lookup(token, store.now());
    if (!session || token === undefined) throw new ReviewError('UNAUTHENTICATED', 'Sign in first (POST /api/session); your session is missing or has expired.');
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      const presented = request.headers['x-csrf-token'];
      if (typeof presented !== 'string' || !sameText(presented, session.csrf_token)) {
        throw new ReviewError('CSRF_TOKEN_INVALID', 'Send the csrf_token your sign-in returned in the x-csrf-token header (reload the page to get it again).');
      }
    }
    if (role === 'admin' && session.role !== 'admin') throw new ReviewError('FORBIDDEN', 'Only an admin may do this.');
    // A reviewer removed or demoted since signing in loses the session's rights at once.
    const account = store.accounts.get(session.username);
    if (!account) throw new ReviewError('UNAUTHENTICATED', 'This account no longer exists; ask an admin.');
    if (role === 'admin' && account.role !== 'admin') throw new ReviewError('FORBIDDEN', 'Only an admin may do this.');
    // Until the one-time password is replaced, the session may only do that (or look at itself, or end).
    if (account.must_change_password && !PASSWORD_CHANGE_ROUTES.has(`${request.method} ${request.routeOptions.url}`)) {
      throw new ReviewError('PASSWORD_CHANGE_REQUIRED', 'Choose your own password first (POST /api/session/password): the one you signed in with was a one-time password.');
    }
    request.review = { session, token };
  };
  const signedIn = { onRequest: authenticate() };
  const adminOnly = { onRequest: authenticate('admin') };
  const sessionOf = (request: FastifyRequest) => request.review!.session;

  const cookie = (value: string, maxAgeSeconds: number) =>
    `${SESSION_COOKIE}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${deps.cookieSecure ? '; Secure' : ''}`;

  // ---- the UI and the service's own endpoints
  for (const [path, file] of Object.entries(ui)) {
    app.get(path, { schema: { hide: true } }, async (_request, reply) => reply.type(file.type).send(file.body));
  }
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/livez', { schema: { hide: true } }, async (_request, reply) => reply.type('text/plain').send('ok\n'));
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const { ready, detail } = store.ready();
    return reply.code(ready ? 200 : 503).type('text/plain').send(`${detail}\n`);
  });
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));

  // ---- sessions
  app.post('/api/session', { schema: schemas.signIn }, async (request, reply) => {
    if (!store.ready().ready) throw new ReviewError('NOT_READY', 'The review service is starting; retry in a moment.');
    const { username, password } = request.body as { username: string; password: string };
    const waitSeconds = signInFailures.blockedFor(username, store.now());
    if (waitSeconds > 0) {
      reply.header('retry-after', String(waitSeconds));
      throw new ReviewError('TOO_MANY_ATTEMPTS', `Too many failed sign-ins for this user name; try again in ${waitSeconds} s.`);
    }
    const account = store.accounts.get(username);
    // A hash is checked even for an unknown name, so the answer takes as long either way.
    const ok = await verifyPassword(password, account?.password_hash ?? UNKNOWN_USER_HASH);
    if (!account || !ok) {
      signInFailures.failed(username, store.now());
      throw new ReviewError('INVALID_CREDENTIALS', 'Wrong user name or password.');
    }
    signInFailures.succeeded(username);
    const { token, session } = await store.openSession(account);
    reply.header('set-cookie', cookie(token, Math.floor(deps.sessionMs / 1_000)));
    return { username: session.username, role: session.role, csrf_token: session.csrf_token, expires_at: session.expires_at, must_change_password: account.must_change_password };
  });
  app.get('/api/session', { ...signedIn, schema: schemas.whoAmI }, async (request) => {
    const session = sessionOf(request);
    const mustChange = store.accounts.get(session.username)?.must_change_password ?? false;
    return { username: session.username, role: session.role, csrf_token: session.csrf_token, expires_at: session.expires_at, must_change_password: mustChange };
  });
  app.post('/api/session/password', { ...signedIn, schema: schemas.changePassword }, async (request, reply) => {
    const { current_password, new_password } = request.body as { current_password: string; new_password: string };
    await store.changePassword(sessionOf(request).username, current_password, new_password);
    return reply.code(204).send();
  });
  app.delete('/api/session', { ...signedIn, schema: schemas.signOut }, async (request, reply) => {
    await store.closeSession(request.review!.token);
    reply.header('set-cookie', cookie('', 0));
    return reply.code(204).send();
  });

  // ---- the queue
  app.get('/api/pipelines', { ...signedIn, schema: schemas.pipelines }, async () => ({
    pipelines: [...store.desks.values()].map((desk) => ({
      name: desk.pipeline.name,
      kind: desk.pipeline.plugin.kind,
      decisions: desk.rules.decisions,
      fields: desk.rules.fields.map((f) => ({ name: f.name, values: f.values ?? null })),
      counts: desk.queue.counts(),
      settings: {
        sla_seconds: desk.settings.slaMs / 1_000,
        lease_seconds: desk.settings.leaseMs / 1_000,
        fallback_decision: desk.settings.fallbackDecision,
        audit_rate: desk.settings.auditRate,
      },
    })),
  }));
  app.get('/api/pipelines/:pipeline/items', { ...signedIn, schema: schemas.listItems }, async (request) => {
    const { pipeline } = request.params as { pipeline: string };
    const { status = 'open' } = request.query as { status?: 'open' | 'resolved' | 'expired' | 'superseded' | 'all' };
    return { items: store.desk(pipeline).queue.list(status, store.now()) };
  });
  app.get('/api/pipelines/:pipeline/items/:item_id', { ...signedIn, schema: schemas.getItem }, async (request) => {
    const { pipeline, item_id } = request.params as { pipeline: string; item_id: string };
    return { item: store.item(pipeline, item_id) };
  });
  const act = (action: 'claim' | 'release' | 'resolve') => async (request: FastifyRequest) => {
    const { pipeline, item_id } = request.params as { pipeline: string; item_id: string };
    const { username } = sessionOf(request);
    try {
      const item =
        action === 'claim'
          ? await store.claim(pipeline, item_id, username)
          : action === 'release'
            ? await store.release(pipeline, item_id, username)
            : await store.resolve(pipeline, item_id, username, (request.body ?? {}) as Record<string, unknown>);
      actions.inc({ pipeline: store.desk(pipeline).pipeline.name, action, outcome: 'ok' });
      return { item };
    } catch (error) {
      if (isReviewError(error) && store.desks.has(pipeline)) actions.inc({ pipeline, action, outcome: error.code });
      throw error;
    }
  };
  app.post('/api/pipelines/:pipeline/items/:item_id/claim', { ...signedIn, schema: schemas.claim }, act('claim'));
  app.post('/api/pipelines/:pipeline/items/:item_id/release', { ...signedIn, schema: schemas.release }, act('release'));
  app.post('/api/pipelines/:pipeline/items/:item_id/resolve', { ...signedIn, schema: schemas.resolve }, act('resolve'));

  // ---- accounts (admins)
  app.get('/api/reviewers', { ...adminOnly, schema: schemas.listReviewers }, async () => ({
    reviewers: store.accounts.list().map(({ username, role, created_at, created_by }) => ({ username, role, created_at, created_by })),
  }));
  app.post('/api/reviewers', { ...adminOnly, schema: schemas.addReviewer }, async (request, reply) => {
    const { username, role = 'reviewer' } = request.body as { username: string; role?: Role };
    if (!ROLES.includes(role)) throw new ReviewError('INVALID_REQUEST', `role must be one of ${ROLES.join(', ')}.`);
    const { password, record } = await store.addReviewer(username, role, sessionOf(request).username);
    return reply.code(201).send({ username: record.username, role: record.role, password });
  });

  return app;
}

/** A well-formed hash no password matches (checked for unknown user names so timing does not tell them apart). */
const UNKNOWN_USER_HASH = `scrypt$32768$8$1$${Buffer.alloc(16).toString('base64url')}$${Buffer.alloc(64).toString('base64url')}`;

/**
 * Failed sign-ins per user name, in this instance: after `maxFailures` within
 * `windowMs`, that name is refused for the rest of the window (429). Guessing
 * is slow anyway (scrypt); this bounds it per instance.
 */
export class SignInThrottle {
  private readonly failures = new Map<string, number[]>();
  private readonly maxFailures: number;
  private readonly windowMs: number;

  constructor(maxFailures = 5, windowMs = 15 * 60_000) {
    this.maxFailures = maxFailures;
    this.windowMs = windowMs;
  }

  blockedFor(username: string, now: number): number {
    const recent = (this.failures.get(username) ?? []).filter((at) => at > now - this.windowMs);
    if (recent.length === 0) this.failures.delete(username);
    else this.failures.set(username, recent);
    return recent.length >= this.maxFailures ? Math.ceil((recent[0]! + this.windowMs - now) / 1_000) : 0;
  }

  failed(username: string, now: number): void {
    // Bounded: a flood of made-up names cannot grow the map without end.
    if (this.failures.size > 10_000) this.failures.clear();
    this.failures.set(username, [...(this.failures.get(username) ?? []), now]);
  }

  succeeded(username: string): void {
    this.failures.delete(username);
  }
}
