/**
 * `derive(key)` computed once per key object and held weakly, so it goes when
 * the key does: for values a hot path would otherwise rebuild from the same
 * constant on every call (a weights table, an array's encoded bytes). The key
 * is taken by identity: it must not change after its first use.
 */
export function oncePerObject<K extends object, V>(derive: (key: K) => V): (key: K) => V {
  const derived = new WeakMap<K, V>();
  return (key) => {
    let value = derived.get(key);
    if (value === undefined) {
      value = derive(key);
      derived.set(key, value);
    }
    return value;
  };
}
