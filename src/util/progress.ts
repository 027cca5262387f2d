import cliProgress from 'cli-progress';

/** A progress reporter for a long step: a bar with rate and ETA on a TTY, plain periodic lines otherwise. */
export interface Progress {
  /** Advance by `n` units (samples, bytes...); `status` (e.g. "loss 0.31 acc 0.91") is shown after the rate. */
  tick(n: number, status?: string): void;
  /** Change the expected total (e.g. once a header has been read). */
  setTotal(total: number): void;
  /** Finish the bar and print a final line. */
  done(): void;
}

/** Options for {@link createProgress}. */
export interface ProgressOptions {
  label: string;
  total: number;
  /** Unit name shown after the rate, e.g. 'samples'. */
  unit?: string;
  /** Where to write (default stderr). */
  stream?: NodeJS.WriteStream;
  /** Seconds between plain lines when not on a TTY (default 5). */
  plainEvery?: number;
  /** Print nothing at all. */
  quiet?: boolean;
}

function fmtRate(r: number): string {
  return r >= 1e6 ? `${(r / 1e6).toFixed(1)}M` : r >= 1e3 ? `${(r / 1e3).toFixed(1)}k` : r.toFixed(0);
}

function fmtEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60).toString().padStart(2, '0')}s` : `${Math.round(s)}s`;
}

/** Start a progress reporter (see {@link Progress}). */
export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const unit = opts.unit ?? 'items';
  const start = Date.now();
  let total = opts.total;
  let value = 0;
  let status = '';
  if (opts.quiet) return { tick(n) { value += n; }, setTotal(t) { total = t; }, done() {} };
  const rate = () => value / Math.max(1e-3, (Date.now() - start) / 1000);
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar({
      stream, hideCursor: true, etaBuffer: 50, fps: 5,
      format: `${opts.label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}{status}`,
    }, cliProgress.Presets.shades_classic);
    bar.start(total, 0, { rate: '0', status: '' });
    return {
      tick(n, s) { value += n; if (s !== undefined) status = ` | ${s}`; bar.update(value, { rate: fmtRate(rate()), status }); },
      setTotal(t) { total = t; bar.setTotal(t); },
      done() { bar.update(value, { rate: fmtRate(rate()), status }); bar.stop(); },
    };
  }
  const every = (opts.plainEvery ?? 5) * 1000;
  let last = start;
  const line = () => {
    const r = rate();
    const pct = total > 0 ? ` (${((100 * value) / total).toFixed(1)}%)` : '';
    const eta = total > 0 && r > 0 ? ` ETA ${fmtEta((total - value) / r)}` : '';
    stream.write(`${opts.label}: ${value}/${total} ${unit}${pct}, ${fmtRate(r)} ${unit}/s${eta}${status}\n`);
  };
  return {
    tick(n, s) { value += n; if (s !== undefined) status = `, ${s}`; const now = Date.now(); if (now - last >= every) { last = now; line(); } },
    setTotal(t) { total = t; },
    done() { line(); },
  };
}
