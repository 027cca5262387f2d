// What the remote layer needs from a server: ranged GETs, HEAD, and (where the protocol allows) PUT and DELETE.

/** An answer to a GET: the body from byte `from` on. */
export interface GetResult {
  /** Where the body starts in the object (0 when the server ignored the Range and sent it all). */
  start: number;
  /** The object's total size when the server said it. */
  total?: number;
  body: AsyncIterable<Uint8Array>;
}

/** A store's remote home: keys are store-relative paths such as `dataset.json` or `train/x-00000.npy`. */
export interface Backend {
  /** The store URL (canonical form). */
  readonly url: string;
  /** Whether put/remove work (S3 yes; plain HTTP no). */
  readonly writable: boolean;
  /** The URL of `key`, for messages. */
  urlOf(key: string): string;
  /** GET `key` from byte `from` (a Range request when from > 0); null when the object does not exist. Throws TransferError. */
  get(key: string, from: number, signal: AbortSignal): Promise<GetResult | null>;
  /** Size of `key`, or null when it does not exist. */
  head(key: string, signal: AbortSignal): Promise<number | null>;
  /** Upload a local file (multipart when large) or bytes to `key`. */
  put(key: string, body: { path: string } | { bytes: Uint8Array }, signal: AbortSignal): Promise<void>;
  /** Delete `key` (missing is fine). */
  remove(key: string, signal: AbortSignal): Promise<void>;
  /** Release connections. */
  close(): void;
}
