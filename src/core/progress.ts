import cliProgress from 'cli-progress';

/** A progress reporter for a long step: a bar with rate and ETA on a TTY, plain periodic lines otherwise. */
export interface Progress {
  /** Advance by `n` units (samples, bytes...); `status` (e.g. "loss 0.31 acc 0.91") is shown after the rate. */
  tick(n: number, status?: string): void;
  /** Input bytes consumed so far (shown as MB/s; with no known total of units, they drive the bar and ETA). */
  bytes(done: number): void;
  /** Change the expected total (e.g. once a header has been read). */
  setTotal(total: number): void;
  /** Finish the bar and print a final line. */
  done(): void;
}

/** Options for {@link createProgress}. */
export interface ProgressOptions {
  label: string;
  /** Expected units in all; 0 when unknown (then the bar follows input bytes if `bytesTotal` is known, else none). */
  total: number;
  /** Unit name shown after the rate, e.g. 'samples'. */
  unit?: string;
  /** Input bytes in all, when known (see {@link Progress.bytes}). */
  bytesTotal?: number;
  /** Where to write (default stderr). */
  stream?: NodeJS.WriteStream;
  /** Seconds between plain lines when not on a TTY (default 5). */
  plainEvery?: number;
  /** Print nothing at all. */
  quiet?: boolean;
}

function fmtRate(r: number): string {
  // slow units (minutes each, e.g. the lab's training runs) keep two significant digits instead of printing 0
  return r >= 1e6 ? `${(r / 1e6).toFixed(1)}M` : r >= 1e3 ? `${(r / 1e3).toFixed(1)}k` : r >= 10 || r === 0 ? r.toFixed(0) : r.toPrecision(2);
}

function fmtEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60).toString().padStart(2, '0')}s` : `${Math.round(s)}s`;
}

const mb = (b: number) => (b / 1e6).toFixed(b < 1e8 ? 1 : 0);

/** Start a progress reporter (see {@link Progress}). */
export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const unit = opts.unit ?? 'items';
  const bytesTotal = opts.bytesTotal ?? 0;
  const start = Date.now();
  let total = opts.total;
  let value = 0;
  let bytesDone = -1; // -1: the source reports no bytes
  let status = '';
  if (opts.quiet) return { tick(n) { value += n; }, bytes(d) { bytesDone = d; }, setTotal(t) { total = t; }, done() {} };
  const seconds = () => Math.max(1e-3, (Date.now() - start) / 1000);
  /** What the bar and ETA follow: the units when their total is known, else input bytes when theirs is, else nothing. */
  const measure = (): { done: number; of: number } | null =>
    total > 0 ? { done: value, of: total } : bytesTotal > 0 && bytesDone >= 0 ? { done: bytesDone, of: bytesTotal } : null;
  /** The counts and rates, e.g. "5120/60000 samples | 9.8k samples/s | 12.1 MB/s". */
  const text = (sep: string) => {
    const parts = [total > 0 ? `${value}/${total} ${unit}` : `${value} ${unit}`, `${fmtRate(value / seconds())} ${unit}/s`];
    if (bytesDone >= 0) {
      if (total <= 0 && bytesTotal > 0) parts.push(`${mb(bytesDone)}/${mb(bytesTotal)} MB`);
      parts.push(`${(bytesDone / 1e6 / seconds()).toFixed(1)} MB/s`);
    }
    return parts.join(sep);
  };

  if (stream.isTTY) {
    let m = measure();
    const bar = new cliProgress.SingleBar({
      stream, hideCursor: true, etaBuffer: 50, fps: 5,
      format: (o, p, pl: { text: string; status: string }) => {
        const head = m ? `[${cliProgress.Format.BarFormat(p.progress, o)}] ${Math.floor(p.progress * 100)}% | ` : '';
        const eta = m ? ` | ETA ${cliProgress.Format.TimeFormat(p.eta, o, 5)}` : '';
        return `${opts.label} ${head}${pl.text}${eta}${pl.status}`;
      },
    }, cliProgress.Presets.shades_classic);
    bar.start(m?.of ?? 1, 0, { text: text(' | '), status: '' });
    const update = () => {
      const was = m;
      m = measure();
      if (m && m.of !== was?.of) bar.setTotal(m.of);
      bar.update(m?.done ?? 0, { text: text(' | '), status });
    };
    return {
      tick(n, s) { value += n; if (s !== undefined) status = ` | ${s}`; update(); },
      bytes(d) { bytesDone = d; },
      setTotal(t) { total = t; update(); },
      done() { update(); bar.stop(); },
    };
  }
  const every = (opts.plainEvery ?? 5) * 1000;
  let last = start;
  const line = () => {
    const m = measure();
    const pct = m ? `${((100 * m.done) / m.of).toFixed(1)}%, ` : '';
    const r = m ? m.done / seconds() : 0;
    const eta = m && r > 0 && m.done < m.of ? `, ETA ${fmtEta((m.of - m.done) / r)}` : '';
    stream.write(`${opts.label}: ${pct}${text(', ')}${eta}${status}\n`);
  };
  return {
    tick(n, s) { value += n; if (s !== undefined) status = `, ${s}`; const now = Date.now(); if (now - last >= every) { last = now; line(); } },
    bytes(d) { bytesDone = d; },
    setTotal(t) { total = t; },
    done() { line(); },
  };
}
