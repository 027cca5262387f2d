// Prints 1 when a program calling oneDNN's dnnl_sgemm links against -ldnnl here and that oneDNN runs its CPU work
// with OpenMP or sequentially (binding.gyp condition), else 0. A TBB or threadpool build is left out: the engine keeps
// each call to one thread through OpenMP's per-thread team size (native/kernels.cc, lib_sgemm).
const { canLink } = require('./can-link.cjs');

if (process.env.SLIMFIT_NO_BLAS || process.env.SLIMFIT_NO_DNNL) { process.stdout.write('0'); process.exit(0); }
const ok = canLink('t.cc', [
  '#include <oneapi/dnnl/dnnl.h>',
  '#if DNNL_CPU_RUNTIME != DNNL_RUNTIME_OMP && DNNL_CPU_RUNTIME != DNNL_RUNTIME_SEQ',
  '#error oneDNN built for another threading runtime',
  '#endif',
  'int main(){float a=1,b=1,c=0;return dnnl_sgemm(\'N\',\'N\',1,1,1,1.f,&a,1,&b,1,0.f,&c,1)==dnnl_success&&c==1.f?0:1;}',
  ''].join('\n'), process.env.CXX || 'g++', ['-ldnnl']);
process.stdout.write(ok ? '1' : '0');
