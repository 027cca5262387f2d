// Prints 1 when a program including <zlib.h> links against -lz here (binding.gyp condition for slimfit_png), else 0.
const { canLink } = require('./can-link.cjs');

if (process.env.SLIMFIT_NO_ZLIB) { process.stdout.write('0'); process.exit(0); }
const ok = canLink('t.c', '#include <zlib.h>\nint main(){return zlibVersion()[0] ? 0 : 1;}\n', process.env.CC || 'gcc', ['-lz']);
process.stdout.write(ok ? '1' : '0');
