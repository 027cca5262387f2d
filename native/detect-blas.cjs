// Prints 1 when a program including <cblas.h> links against -lopenblas here (binding.gyp condition), else 0.
const { canLink } = require('./can-link.cjs');

if (process.env.SLIMFIT_NO_BLAS) { process.stdout.write('0'); process.exit(0); }
const ok = canLink('t.cc', '#include <cblas.h>\nint main(){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c==1.f?0:1;}\n',
  process.env.CXX || 'g++', ['-lopenblas']);
process.stdout.write(ok ? '1' : '0');
