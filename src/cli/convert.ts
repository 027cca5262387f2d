// `slimfit convert [SRC] OUT`: any supported input to a store (logic in src/formats/open-source.ts and src/store/write.ts).
import type { Command } from 'commander';
import { join } from 'node:path';
import { SlimfitError, UsageError } from '../core/errors.ts';
import { parseBytes } from '../core/units.ts';
import { remoteFlags, wholeFlag } from './flags.ts';
import { JSON_FLAG, keepStdoutForJson, printJson } from './json-out.ts';

/** Options `convert` takes (messy-source options are passed through to their readers). */
interface ConvertOptions {
  x?: string; y?: string; train?: string; test?: string; split?: string; seed: number; shardSize: string;
  dedupe?: boolean; force?: boolean; quiet?: boolean; classNames?: string; dupCheck: boolean; json?: boolean;
  part?: string; mergeTimeout: number;
  [k: string]: unknown;
}

/** Register `convert`. */
export function register(program: Command): void {
  program.command('convert')
    .description('convert a dataset into a slimfit store (a folder of .npy shards + dataset.json)')
    .argument('<paths...>', 'SRC OUT, or just OUT with --x/--y files or --train/--test inputs')
    .option('--x <name>', '.npz member / HDF5 or .mat dataset holding the samples; with no SRC: the samples file (.npy or IDX)')
    .option('--y <name>', 'the same for the labels')
    .option('--train <src>', 'an input that is the training split (with --test)')
    .option('--test <src>', 'an input that is the test split (with --train)')
    .option('--split <spec>', 'split one input by class-stratified fractions, e.g. train=0.9,test=0.1')
    .option('--seed <n>', 'seed for --split', wholeFlag('--seed', 0), 0)
    .option('--shard-size <bytes>', 'target size of each x shard', '64MB')
    .option('--dedupe', 'drop exact duplicate samples (keeps the first; no test sample stays in train)')
    .option('--no-dup-check', 'skip fingerprinting samples for duplicate/leakage counts (saves ~9-18 bytes per sample)')
    .option('--class-names <list>', 'comma-separated class names, index = label')
    .option('--force', 'replace an existing store at OUT')
    .option('--endpoint <url>', 'OUT = s3://bucket/prefix on an S3-compatible server (MinIO, Ceph, R2...): its endpoint (default $AWS_ENDPOINT_URL)')
    .option('-q, --quiet', 'no progress output')
    .option('--json', JSON_FLAG)
    .option('--grayscale', 'images: convert to one gray channel (Rec.709 luma)')
    .option('--resize <WxH>', 'images: stretch every image to exactly W x H (bilinear/Triangle filter)')
    .option('--strict', 'stop at the first unreadable image, malformed line or NaN/infinite value instead of skipping or counting it')
    .option('--workers <n>', 'images: decode threads (default: cores - 1, at least 1); text: parser threads (default 1; 0 = main thread)', wholeFlag('--workers', 0))
    .option('--label-col <col>', 'text: label column, 0-based index (negative from the end) or header name (default 0)')
    .option('--shape <dims>', 'text: per-sample shape of the feature columns, e.g. 28,28')
    .option('--x-dtype <dtype>', 'text: store features as uint8, float16, float32 (default) or float64')
    .option('--header', 'text: the first line is a header (default: detected)')
    .option('--no-header', 'text: the first line is data')
    .option('--delimiter <char>', 'text: field separator (",", "tab", ";", "whitespace"; default: detected)')
    .option('--part <I/N>', 'convert only part I (0-based) of N parts of SRC into a part store at OUT; join them with `slimfit merge`')
    .option('--merge-timeout <seconds>', 'under mpirun: how long rank 0 waits for the other ranks\' parts', wholeFlag('--merge-timeout', 1), 3600)
    .allowUnknownOption(false)
    .action(async (paths: string[], o: ConvertOptions, cmd: Command) => {
      if (paths.length > 2) throw new UsageError(`expected SRC OUT, got ${paths.length} paths`, { hint: 'slimfit convert SRC OUT' });
      // One path and no --x/--y/--train/--test: the usual slip is `convert SRC` without OUT, so say that (not just
      // "nothing to convert", as the lone path would be taken as OUT).
      if (paths.length === 1 && !o.x && !o.y && !o.train && !o.test) {
        throw new UsageError(`OUT is missing: only one path given ('${paths[0]}')`, { hint: 'slimfit convert SRC OUT (or slimfit convert OUT --x FILE --y FILE, or --train SRC --test SRC)' });
      }
      const out = paths[paths.length - 1];
      const src = paths.length === 2 ? paths[0] : undefined;
      if (o.json) keepStdoutForJson();
      const shardBytes = parseBytes(o.shardSize);
      if (!shardBytes) throw new UsageError(`cannot read --shard-size ${o.shardSize}`, { hint: 'e.g. 64MB, 512k, 1GiB' });
      const seed = o.seed;
      // V8 doubles its young generation as a run goes on (to 2 x 16 MB), so a long conversion's peak RSS was ~8 MB
      // above a short one's for the same batches; kept at its start size, that part of the growth is gone (old
      // space and the duplicate index still grow with a longer run: 122 -> 151 MB for 21k -> 210k PNGs).
      (await import('node:v8')).setFlagsFromString('--semi-space-growth-factor=1');
      const { openInput } = await import('../formats/open-source.ts');
      const { writeStore } = await import('../store/write.ts');
      const { parseSplitSpec } = await import('../store/split.ts');
      const { conversionJson, printConversionSummary, warnNonFinite } = await import('./convert-summary.ts');
      const ratios = o.split ? parseSplitSpec(o.split) : null;
      const { messyOptionsFromCli } = await import('../formats/messy.ts');
      const { checkOutsideInputs } = await import('../store/atomic.ts');
      // Input paths: SRC, --train/--test, and --x/--y when they are files (with SRC they name arrays inside it).
      const inputs = [src, o.train, o.test, ...(src ? [] : [o.x, o.y])].filter((p): p is string => typeof p === 'string');
      const { isRemote } = await import('../remote/index.ts');
      if (!isRemote(out)) await checkOutsideInputs(out, inputs);
      const t0 = performance.now(); // the summary's time includes opening the input (e.g. an archive's first pass)
      const storeOpts = {
        shardBytes, dedupe: o.dedupe, force: o.force, quiet: o.quiet, checkDuplicates: o.dupCheck, strict: Boolean(o.strict),
        classNames: o.classNames ? o.classNames.split(',').map((s) => s.trim()) : undefined,
        command: ['slimfit', ...cmd.parent!.args].join(' '),
        tool: `slimfit ${cmd.parent!.version() ?? ''}`.trim(),
      };
      const { mpiEnv } = await import('../core/config.ts');
      const mpi = o.part ? null : mpiEnv();
      if (o.part || (mpi && mpi.size > 1)) {
        const parts = await import('../store/parts.ts');
        const part = o.part ? parts.parsePartSpec(o.part) : { index: mpi!.rank, count: mpi!.size };
        if (isRemote(out)) throw new UsageError(`${o.part ? '--part' : 'converting under mpirun'} writes part stores into local folders, not to ${out}`, { hint: 'convert and merge into a local folder, then `slimfit push DIR URL`' });
        const { printConversionSummary: print } = await import('./convert-summary.ts');
        // Under mpirun a rank's part folder is its own (named by rank): one left by an earlier job is replaced.
        const convertOpts = { ...o, ...messyOptionsFromCli(o), ...storeOpts, split: o.split, seed, part: undefined, ...(o.part ? {} : { force: true }) };
        const runPart = async (dir: string) => {
          await checkOutsideInputs(dir, inputs);
          const report = await parts.convertPart(src, dir, part, convertOpts);
          print({ ...report, seconds: (performance.now() - t0) / 1000 }, o.json ? process.stderr : process.stdout);
          return report;
        };
        if (o.part) {
          const report = await runPart(out);
          if (o.json) printJson({ out: report.dir, part: `${part.index}/${part.count}`, samples: Object.fromEntries(Object.entries(report.manifest.splits).map(([k, s]) => [k, s.samples])) });
          return;
        }
        // Under mpirun: each rank converts its part next to OUT, rank 0 waits for the others and merges.
        await parts.mpiConvert(out, { ...part, job: mpi!.job }, runPart, { ...storeOpts, timeoutSeconds: o.mergeTimeout, log: (line) => { if (!o.quiet) process.stderr.write(`slimfit: ${line}\n`); } }, (r) => {
          print({ ...r }, o.json ? process.stderr : process.stdout, { text: r.text });
          process.stderr.write(`slimfit: merged ${r.parts} parts into ${out}: ${r.moved} shard files renamed, ${r.copied} copied\n`);
          warnNonFinite(r);
          if (o.json) printJson({ ...conversionJson(r, { text: r.text }), parts: r.parts, moved: r.moved, copied: r.copied });
        });
        return;
      }
      const input = await openInput(src, { ...o, ...messyOptionsFromCli(o), part: undefined });
      const sources = input.kind === 'single' ? [input.source] : input.splits.map((s) => s.source);
      try {
        let plan: Parameters<typeof writeStore>[1];
        if (input.kind === 'single') {
          plan = { kind: 'ratio', source: input.source, ratios: ratios ?? [{ name: 'train', fraction: 1 }], seed };
        } else {
          if (ratios) throw new UsageError('this input comes with its own train/test split; drop --split to keep it', { file: src ?? o.train });
          plan = { kind: 'presplit', splits: input.splits };
        }
        const report = await writeStore(out, plan, { ...storeOpts, remote: remoteFlags(o as { endpoint?: string }) });
        const seconds = (performance.now() - t0) / 1000;
        const text = (await import('../formats/messy.ts')).detectMessy;
        const isText = (src ?? o.train) !== undefined && (await text((src ?? o.train)!)) === 'csv';
        const again = ['slimfit', ...cmd.parent!.args.filter((a) => a !== '--force')].join(' ');
        printConversionSummary({ ...report, seconds }, o.json ? process.stderr : process.stdout, { text: isText, command: again });
        for (const s of sources) for (const w of (s as { warnings?: string[] }).warnings ?? []) process.stderr.write(`slimfit: warning: ${w}\n`);
        warnNonFinite(report);
        if (o.json) printJson(conversionJson(report, { text: isText, seconds }));
      } finally {
        for (const s of sources) await s.close();
      }
    });
}
