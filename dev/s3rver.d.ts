// The few parts of s3rver (no types published) that dev/remote-servers.ts uses.
declare module 's3rver' {
  export default class S3rver {
    constructor(opts: { port?: number; address?: string; silent?: boolean; directory: string; configureBuckets?: Array<{ name: string }> });
    run(): Promise<unknown>;
    close(): Promise<void>;
  }
}
