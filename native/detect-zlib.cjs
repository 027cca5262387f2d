// Prints 1 when a program including <zlib.h> links against -lz here (binding.gyp condition for slimfit_png), else 0.
const { spawnSync } = require('node:child_process');
const { mkdtempSync, writeFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

if (process.env.SLIMFIT_NO_ZLIB) { process.stdout.write('0'); process.exit(0); }
const dir = mkdtempSync(join(tmpdir(), 'slimfit-zlib-'));
try {
  const src = join(dir, 't.c');
  writeFileSync(src, '#include <zlib.h>\nint main(){return zlibVersion()[0] ? 0 : 1;}\n');
  const r = spawnSync(process.env.CC || 'gcc', [src, '-o', join(dir, 't'), '-lz'], { stdio: 'ignore' });
  process.stdout.write(r.status === 0 ? '1' : '0');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
