// Entry of the benchmarks (`npm run bench -- --help`): peers measured in the same run; not part of the package.
import { runProgram } from '../dev/program.ts';
import { register as augment } from './cli/augment.ts';
import { register as engine } from './cli/engine.ts';
import { register as labStep } from './cli/lab-step.ts';
import { register as loader } from './cli/loader.ts';
import { register as mpi } from './cli/mpi.ts';

await runProgram('slimfit-bench', 'Benchmarks against peers measured in the same run', [augment, engine, labStep, loader, mpi]);
