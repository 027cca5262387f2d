// Real servers for the remote-store tests and bench, all on 127.0.0.1: nginx serving a folder (Debian's nginx, run as
// `nginx -c CONF -p PREFIX` with `daemon off;`), s3rver in-process (the S3 protocol on a folder), and a fault-injecting
// TCP proxy between a client and either of them.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { join } from 'node:path';

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Whether nginx is installed (`.ci/run` installs Debian's package when missing). */
export function haveNginx(): boolean {
  return spawnSync('nginx', ['-v']).status === 0;
}

/** Wait until something accepts connections on 127.0.0.1:port. */
async function waitPort(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => { const c = connect(port, '127.0.0.1'); c.once('connect', () => { c.destroy(); r(true); }); c.once('error', () => r(false)); });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Serve `root` with nginx on 127.0.0.1 (Range requests, keep-alive). Its worker runs as an unprivileged user, so `root`
 * and the folders above it are made world-readable (0755). `prefix` holds the config, logs and pid file.
 */
export async function startNginx(root: string, prefix: string): Promise<{ url: string; port: number; stop: () => Promise<void> }> {
  const port = await freePort();
  mkdirSync(join(prefix, 'logs'), { recursive: true });
  for (const d of [root, prefix]) chmodSync(d, 0o755);
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, `daemon off;
worker_processes 1;
error_log ${join(prefix, 'logs', 'error.log')} warn;
pid ${join(prefix, 'nginx.pid')};
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp-body; proxy_temp_path ${prefix}/tmp-proxy; fastcgi_temp_path ${prefix}/tmp-fcgi;
  uwsgi_temp_path ${prefix}/tmp-uwsgi; scgi_temp_path ${prefix}/tmp-scgi;
  keepalive_requests 10000;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location / { autoindex off; }
  }
}
`);
  const child: ChildProcess = spawn('nginx', ['-c', conf, '-p', prefix], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => { err += String(d); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await Promise.race([waitPort(port), exited.then(() => { throw new Error(`nginx exited: ${err}`); })]);
  return {
    url: `http://127.0.0.1:${port}`, port,
    async stop() { child.kill('SIGTERM'); const t = setTimeout(() => child.kill('SIGKILL'), 3000); await exited; clearTimeout(t); },
  };
}

/** Start s3rver (in this process) on 127.0.0.1 storing objects under `dir`, with the given buckets. */
export async function startS3(dir: string, buckets: string[]): Promise<{ endpoint: string; port: number; stop: () => Promise<void> }> {
  const { default: S3rver } = await import('s3rver');
  const port = await freePort();
  const server = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: buckets.map((name) => ({ name })) });
  await server.run();
  return { endpoint: `http://127.0.0.1:${port}`, port, stop: () => server.close() };
}

/** Faults the proxy injects; each field is checked per connection / per response. */
export interface Faults {
  /** Cut the connection that next sends bytes back, this many bytes later (once; the field is cleared). */
  cutAfter?: number;
  /** Answer this HTTP status (500, 503...) instead of forwarding, for the next `count` requests. */
  status?: { code: number; count: number };
  /** Swallow the next `count` requests and never answer them (until the client gives up). */
  stall?: { count: number };
  /** Flip one byte this many bytes after the current position of a connection's answers, `count` times. */
  flip?: { offset: number; count: number };
  /** Delay before forwarding each request to the server (ms): added latency per request, not a bandwidth limit. */
  latencyMs?: number;
  /** Cut every connection after this many server->client bytes (a permanently broken path). */
  cutAlways?: number;
}

/**
 * A TCP proxy on 127.0.0.1 to `target` that injects `faults` (mutable: change them while it runs). Counts connections and
 * faults injected. Each connection ends by itself when either side closes.
 */
export async function startFaultProxy(targetPort: number, faults: Faults = {}): Promise<{ url: string; port: number; faults: Faults; injected: Record<string, number>; connections: () => number; stop: () => Promise<void> }> {
  const injected: Record<string, number> = { cut: 0, status: 0, stall: 0, flip: 0 };
  let conns = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    conns++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => { sockets.delete(upstream); client.destroy(); });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    let stalled = false;
    let reqChain = Promise.resolve();
    // Request faults act per request (connections are kept alive): answer a status, or swallow it and never answer.
    client.on('data', (req: Buffer) => {
      if (stalled) return;
      if (faults.status && faults.status.count > 0) {
        faults.status.count--;
        injected.status++;
        client.end(`HTTP/1.1 ${faults.status.code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        upstream.destroy();
        return;
      }
      if (faults.stall && faults.stall.count > 0) { faults.stall.count--; injected.stall++; stalled = true; return; }
      if (faults.latencyMs) reqChain = reqChain.then(() => new Promise<void>((r) => setTimeout(() => { if (!upstream.destroyed) upstream.write(req); r(); }, faults.latencyMs)));
      else upstream.write(req);
    });
    // Response faults act on the bytes flowing back, from the moment they are set.
    let sent = 0;
    let cutAt = faults.cutAlways;
    let flipAt = -1;
    let chain = Promise.resolve();
    upstream.on('data', (chunk: Buffer) => {
      chain = chain.then(async () => {
        if (client.destroyed || stalled) return;
        if (faults.cutAfter !== undefined) { cutAt = sent + faults.cutAfter; faults.cutAfter = undefined; }
        if (flipAt < 0 && faults.flip && faults.flip.count > 0) { faults.flip.count--; flipAt = sent + faults.flip.offset; }
        let c = chunk;
        if (flipAt >= sent && flipAt < sent + c.length) { c = Buffer.from(c); c[flipAt - sent] ^= 0xff; injected.flip++; flipAt = -1; }
        if (cutAt !== undefined && sent + c.length > cutAt) {
          client.write(c.subarray(0, Math.max(0, cutAt - sent)));
          injected.cut++;
          client.destroy(); upstream.destroy();
          return;
        }
        sent += c.length;
        client.write(c);
      });
    });
    upstream.on('end', () => { void chain.then(() => client.end()); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`, port, faults, injected, connections: () => conns,
    async stop() { for (const s of sockets) s.destroy(); await new Promise<void>((r) => server.close(() => r())); },
  };
}
