// Prints 1 when a program including <cblas.h> links against -lopenblas here (binding.gyp condition), else 0.
const { spawnSync } = require('node:child_process');
const { mkdtempSync, writeFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

if (process.env.SLIMFIT_NO_BLAS) { process.stdout.write('0'); process.exit(0); }
const dir = mkdtempSync(join(tmpdir(), 'slimfit-blas-'));
try {
  const src = join(dir, 't.cc');
  writeFileSync(src, '#include <cblas.h>\nint main(){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c==1.f?0:1;}\n');
  const r = spawnSync(process.env.CXX || 'g++', [src, '-o', join(dir, 't'), '-lopenblas'], { stdio: 'ignore' });
  process.stdout.write(r.status === 0 ? '1' : '0');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
