// Entry of the precision lab (`npm run lab -- --help`): how many bits does learning need? Writes reports/precision.md;
// a research tool of this repository, not part of the package.
import { runProgram } from '../dev/program.ts';
import { register } from './cli.ts';

await runProgram('slimfit-lab', 'precision lab: measure how many bits learning needs (writes reports/precision.md)', [register]);
