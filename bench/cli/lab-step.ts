// `npm run bench -- lab-step`: the precision lab trainer's time per step with the native rounding kernels and without.
import { type Command, Option } from 'commander';

/** Register `npm run bench -- lab-step`. */
export function register(program: Command): void {
  program
    .command('lab-step')
    .description('ms per step of the lab trainer on the gupta2015 network, native rounding kernels vs the JavaScript loops (same run)')
    .option('--steps <n>', 'timed steps per round', '10')
    .option('--rounds <n>', 'alternating rounds per path', '3')
    .option('--fl <n>', 'fraction bits of the 16-bit fixed point', '8')
    .addOption(new Option('--rounding <r>', 'rounding of weights, gradients and layer outputs').choices(['nearest', 'stochastic', 'zero']).default('stochastic'))
    .action(async (o: { steps: string; rounds: string; fl: string; rounding: string }) => {
      const { benchLabStep } = await import('../lab/step.ts');
      const md = await benchLabStep({ steps: Number(o.steps), rounds: Number(o.rounds), fl: Number(o.fl), rounding: o.rounding as 'stochastic', log: (l) => process.stderr.write(`${l}\n`) });
      process.stdout.write(`${md}\n`);
    });
}
