/**
 * Reviewer accounts and sessions. Both live on compacted Kafka topics that
 * every instance of the service follows, so an account added by the CLI, or a
 * session opened on one instance, holds on all of them within a moment:
 *
 * - accounts, keyed by user name: the role and an scrypt hash of the password
 *   (never the password; it is printed once, when the account is created);
 * - sessions, keyed by the SHA-256 of the session token (never the token,
 *   which only the browser's HttpOnly cookie holds): who, the CSRF token, and
 *   when it expires. A tombstone ends a session (sign-out).
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

export const ROLES = ['reviewer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** scrypt cost: N=2^15, r=8, p=1 (about 32 MiB and 50-100 ms per check; OWASP's floor is N=2^17 with p=1 *or* 2^15 at higher cost factors). */
export const SCRYPT_PARAMS = { N: 32_768, r: 8, p: 1, keyLength: 64 } as const;
const SCRYPT_MAXMEM = 64 * 1_024 * 1_024;

export const USERNAME_FORMAT = /^[a-z][a-z0-9._-]{1,63}$/;

export interface AccountRecord {
  username: string;
  role: Role;
  /** `scrypt$N$r$p$salt$hash`, salt and hash base64url. */
  password_hash: string;
  created_at: number;
  created_by: string;
  /** Set while the password is the one-time password printed at creation: the first sign-in must replace it. */
  must_change_password: boolean;
}

const accountSchema = z.object({
  username: z.string().regex(USERNAME_FORMAT),
  role: z.enum(ROLES),
  password_hash: z.string().startsWith('scrypt$'),
  created_at: z.number().int(),
  created_by: z.string(),
  must_change_password: z.boolean().default(false),
});

/** The shortest password a reviewer may choose. */
export const MIN_PASSWORD_CHARS = 12;

export interface SessionRecord {
  username: string;
  role: Role;
  csrf_token: string;
  created_at: number;
  expires_at: number;
}

const sessionSchema = z.object({
  username: z.string(),
  role: z.enum(ROLES),
  csrf_token: z.string().min(20),
  created_at: z.number().int(),
  expires_at: z.number().int(),
});

function scryptAsync(password: string, salt: Buffer, params: { N: number; r: number; p: number; keyLength: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, params.keyLength, { N: params.N, r: params.r, p: params.p, maxmem: SCRYPT_MAXMEM }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

export async function hashPassword(password: string, params = SCRYPT_PARAMS): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(password, salt, params);
  return ['scrypt', params.N, params.r, params.p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

/** True when `password` matches `encoded`; constant time in the comparison. A malformed hash never matches. */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64url');
  const expected = Buffer.from(parts[5]!, 'base64url');
  if (!Number.isInteger(N) || !Number.isInteger(r) || !Number.isInteger(p) || expected.length === 0) return false;
  const actual = await scryptAsync(password, salt, { N, r, p, keyLength: expected.length });
  return timingSafeEqual(actual, expected);
}

/** A one-time password to print: 144 random bits, typeable. */
export const newPassword = (): string => randomBytes(18).toString('base64url');

export const newToken = (): string => randomBytes(32).toString('base64url');

/** The key of a session on the sessions topic: the token itself is never stored. */
export const sessionKey = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

export const encodeJson = (value: unknown): Buffer => Buffer.from(JSON.stringify(value), 'utf8');

/** The accounts in force, as this instance has read them. */
export class AccountBook {
  private readonly accounts = new Map<string, AccountRecord>();

  apply(username: string, value: Buffer | null): void {
    if (value === null) this.accounts.delete(username);
    else this.accounts.set(username, accountSchema.parse(JSON.parse(value.toString('utf8'))));
  }

  get(username: string): AccountRecord | undefined {
    return this.accounts.get(username);
  }

  list(): AccountRecord[] {
    return [...this.accounts.values()].sort((a, b) => a.username.localeCompare(b.username));
  }
}

/** The sessions in force, as this instance has read them (plus those it opened itself). */
export class SessionBook {
  private readonly sessions = new Map<string, SessionRecord>();

  apply(key: string, value: Buffer | null): void {
    if (value === null) this.sessions.delete(key);
    else this.sessions.set(key, sessionSchema.parse(JSON.parse(value.toString('utf8'))));
  }

  /** The session of a cookie's token, unless unknown or expired at `now`. */
  lookup(token: string, now: number): SessionRecord | undefined {
    const key = sessionKey(token);
    const session = this.sessions.get(key);
    if (!session) return undefined;
    if (session.expires_at <= now) {
      this.sessions.delete(key);
      return undefined;
    }
    return session;
  }
}
