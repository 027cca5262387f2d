// Defaults of remote stores, written once (cacheDir's comes from SLIMFIT_CACHE / the user cache folder, src/core/config.ts).

/** What remote stores use for an option left out. */
export const REMOTE_DEFAULTS = {
  /** Bytes the shard cache may take (SLIMFIT_CACHE_LIMIT overrides). */
  cacheLimit: 10e9,
  /** Downloads running ahead of the loader at once. */
  prefetchConcurrency: 2,
} as const;
