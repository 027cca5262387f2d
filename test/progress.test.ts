// Progress reporting: what a person sees with a known sample count, with only a known input size (text, archives),
// and with neither (folder trees) — as plain lines and as a TTY bar.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createProgress } from '../src/core/progress.ts';

/** A stream that keeps what is written; `tty` makes it look like a terminal to cli-progress. */
function sink(tty: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let out = '';
  const w = new Writable({ write(chunk, _enc, cb) { out += chunk.toString(); cb(); } });
  Object.assign(w, { isTTY: tty, columns: 200, cursorTo: () => true, moveCursor: () => true, clearLine: () => true });
  // eslint-disable-next-line no-control-regex
  return { stream: w as unknown as NodeJS.WriteStream, text: () => out.replace(/\x1B\[[0-9;?]*[A-Za-z]|\x1B[78]/g, '') };
}

describe('progress', () => {
  it('plain lines: counts with a total, bytes driving percent and ETA without one, neither for a folder tree', () => {
    const a = sink(false);
    const known = createProgress({ label: 'convert', total: 1000, unit: 'samples', stream: a.stream, plainEvery: 0 });
    known.bytes(2e6);
    known.tick(250);
    assert.match(a.text(), /^convert: 25\.0%, 250\/1000 samples, [\d.]+[kM]? samples\/s, [\d.]+ MB\/s, ETA \S+\n$/);

    const b = sink(false);
    const bytesOnly = createProgress({ label: 'convert', total: 0, unit: 'samples', bytesTotal: 8e6, stream: b.stream, plainEvery: 0 });
    bytesOnly.bytes(2e6);
    bytesOnly.tick(300);
    assert.match(b.text(), /^convert: 25\.0%, 300 samples, [\d.]+[kM]? samples\/s, 2\.0\/8\.0 MB, [\d.]+ MB\/s, ETA \S+\n$/);

    const c = sink(false);
    const neither = createProgress({ label: 'convert', total: 0, unit: 'samples', stream: c.stream, plainEvery: 0 });
    neither.tick(5120);
    neither.done();
    const lines = c.text().trim().split('\n');
    assert.equal(lines.length, 2);
    for (const l of lines) assert.match(l, /^convert: 5120 samples, [\d.]+[kM]? samples\/s$/, 'no "/0", no percent, no ETA');
  });

  it('a finished plain line has no ETA', () => {
    const a = sink(false);
    const p = createProgress({ label: 'verify', total: 10, unit: 'bytes', stream: a.stream, plainEvery: 3600 });
    p.tick(10);
    p.done();
    assert.match(a.text(), /^verify: 100\.0%, 10\/10 bytes, [\d.]+[kM]? bytes\/s\n$/);
  });

  it('TTY bar: follows samples when their total is known, input bytes otherwise, and shows no bar without either', () => {
    const a = sink(true);
    const known = createProgress({ label: 'convert', total: 1000, unit: 'samples', stream: a.stream });
    known.tick(500);
    known.done();
    assert.match(a.text(), /convert \[[█░]{40}\] 50% \| 500\/1000 samples \| [\d.]+[kM]? samples\/s \| ETA/);

    const b = sink(true);
    const bytesOnly = createProgress({ label: 'convert', total: 0, unit: 'samples', bytesTotal: 4e6, stream: b.stream });
    bytesOnly.bytes(3e6);
    bytesOnly.tick(700);
    bytesOnly.done();
    assert.match(b.text(), /convert \[[█░]{40}\] 75% \| 700 samples \| [\d.]+[kM]? samples\/s \| 3\.0\/4\.0 MB \| [\d.]+ MB\/s \| ETA/);

    const c = sink(true);
    const neither = createProgress({ label: 'convert', total: 0, unit: 'samples', stream: c.stream });
    neither.tick(5120);
    neither.done();
    assert.match(c.text(), /convert 5120 samples \| [\d.]+[kM]? samples\/s/);
    assert.doesNotMatch(c.text(), /\/0 |100%|ETA|\[/, 'an unknown total is not shown as done');
  });
});
