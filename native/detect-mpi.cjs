// binding.gyp's questions about MPI (for slimfit_mpi): with no argument prints 1 when `mpicc` exists and a program
// calling MPI_Init links with it, else 0; `--incdirs` / `--libs` print mpicc's include folders / link flags (space
// separated, nothing when there is no mpicc). SLIMFIT_NO_MPI=1 (set by native/prebuild.mjs: the prebuilds must load
// without libmpi) answers 0.
const { spawnSync } = require('node:child_process');
const { canLink } = require('./can-link.cjs');

const showme = (what) => {
  const r = spawnSync('mpicc', [`--showme:${what}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return r.status === 0 ? r.stdout.trim().split(/\s+/).filter(Boolean) : null;
};
const arg = process.argv[2];
if (arg === '--incdirs') process.stdout.write((showme('incdirs') ?? []).join(' '));
else if (arg === '--libs') process.stdout.write((showme('link') ?? []).join(' '));
else {
  if (process.env.SLIMFIT_NO_MPI) { process.stdout.write('0'); process.exit(0); }
  const inc = showme('incdirs'), link = showme('link');
  const ok = inc !== null && link !== null && canLink('t.c', '#define OMPI_SKIP_MPICXX 1\n#include <mpi.h>\nint main(){return MPI_Init(0,0) == 0 ? 0 : 1;}\n',
    process.env.CC || 'gcc', [...inc.map((d) => `-I${d}`), ...link]);
  process.stdout.write(ok ? '1' : '0');
}
