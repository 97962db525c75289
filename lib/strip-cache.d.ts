/** Types of lib/strip-cache.js (plain JavaScript: it runs before any TypeScript can). */
export declare const ROOT: string;
export declare const STRIP_CACHE_DIR: string;
export declare function cacheKey(source: string | Uint8Array): string;
export declare function strip(source: string): string;
export declare function registerStripCache(options?: { cacheDir?: string }): { hits: number; misses: number };
export declare function fillStripCache(options?: { root?: string; cacheDir?: string }): { files: number; written: number; removed: number; failed: string[] };
