/** Passwords and sessions (review/accounts.ts): no broker. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AccountBook, encodeJson, hashPassword, newPassword, SessionBook, sessionKey, verifyPassword } from '../../review/accounts.ts';
import { SignInThrottle } from '../../review/app.ts';

describe('review accounts', () => {
  it('stores an scrypt hash that verifies the password and nothing else', async () => {
    const password = newPassword();
    const hash = await hashPassword(password);
    assert.match(hash, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
    assert.ok(!hash.includes(password));
    assert.equal(await verifyPassword(password, hash), true);
    assert.equal(await verifyPassword(`${password}x`, hash), false);
    assert.equal(await verifyPassword(password, 'plain'), false);
    assert.notEqual(await hashPassword(password), hash, 'salted');
  });

  it('one-time passwords are long and differ', () => {
    const a = newPassword();
    assert.ok(a.length >= 24);
    assert.notEqual(a, newPassword());
  });

  it('a session is found by its token until it expires or is ended; the token itself is not the key', () => {
    const book = new SessionBook();
    const token = 'a-token-of-enough-length-000000000000';
    const key = sessionKey(token);
    assert.notEqual(key, token);
    book.apply(key, encodeJson({ username: 'alice', role: 'reviewer', csrf_token: 'c'.repeat(43), created_at: 0, expires_at: 1_000 }));
    assert.equal(book.lookup(token, 999)?.username, 'alice');
    assert.equal(book.lookup('another-token', 999), undefined);
    assert.equal(book.lookup(token, 1_000), undefined, 'expired');
    book.apply(key, encodeJson({ username: 'alice', role: 'reviewer', csrf_token: 'c'.repeat(43), created_at: 0, expires_at: 5_000 }));
    book.apply(key, null);
    assert.equal(book.lookup(token, 10), undefined, 'a tombstone ends it');
  });

  it('accounts: the latest record per name stands, a tombstone removes it', () => {
    const book = new AccountBook();
    const record = { username: 'alice', role: 'reviewer', password_hash: 'scrypt$1$1$1$a$b', created_at: 1, created_by: 'ops' };
    book.apply('alice', encodeJson(record));
    book.apply('alice', encodeJson({ ...record, role: 'admin' }));
    assert.equal(book.get('alice')?.role, 'admin');
    book.apply('alice', null);
    assert.equal(book.get('alice'), undefined);
    assert.throws(() => book.apply('bob', encodeJson({ ...record, username: 'Bob!' })));
  });

  it('five failed sign-ins for a name block it for the rest of the window; a success clears the count', () => {
    const throttle = new SignInThrottle(5, 60_000);
    for (let i = 0; i < 4; i++) throttle.failed('alice', 1_000 + i);
    assert.equal(throttle.blockedFor('alice', 2_000), 0);
    throttle.failed('alice', 2_000);
    assert.equal(throttle.blockedFor('alice', 2_000), 59, 'seconds until the first failure leaves the window');
    assert.equal(throttle.blockedFor('bob', 2_000), 0, 'per name');
    assert.equal(throttle.blockedFor('alice', 61_001), 0, 'failures age out');
    for (let i = 0; i < 4; i++) throttle.failed('carol', i);
    throttle.succeeded('carol');
    throttle.failed('carol', 10);
    assert.equal(throttle.blockedFor('carol', 20), 0);
  });

  it('accounts made before the one-time rule count as changed', () => {
    const book = new AccountBook();
    book.apply('old', encodeJson({ username: 'old', role: 'reviewer', password_hash: 'scrypt$1$1$1$a$b', created_at: 1, created_by: 'ops' }));
    assert.equal(book.get('old')?.must_change_password, false);
  });
});
