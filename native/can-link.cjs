// canLink(file, source, compiler, libs): true when `source` (written to a temp `file`) compiles and links with
// `libs` here. Used by the detect-*.cjs scripts that binding.gyp runs to decide which optional parts to build.
const { spawnSync } = require('node:child_process');
const { mkdtempSync, writeFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

module.exports.canLink = function canLink(file, source, compiler, libs) {
  const dir = mkdtempSync(join(tmpdir(), 'slimfit-detect-'));
  try {
    const src = join(dir, file);
    writeFileSync(src, source);
    return spawnSync(compiler, [src, '-o', join(dir, 't'), ...libs], { stdio: 'ignore' }).status === 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};
