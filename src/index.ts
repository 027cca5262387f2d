// The public API of the `slimfit` package: convert files into a store, stream shuffled batches from it, and train
// TensorFlow.js models on them. Subpaths: 'slimfit/loader' (the batch generator alone), 'slimfit/precision'
// (number formats). TensorFlow.js is a peer dependency: models passed in and returned here are the caller's own tfjs.

// Errors: every user error is a SlimfitError naming the file or place and what to do.
export { SlimfitError, isSlimfitError } from './core/errors.ts';
export type { DType, FieldSpec } from './core/dtype.ts';
export type { SampleSource, SampleBatch, SkippedInput } from './core/source.ts';

// Stores: converting standard files, and checking, summarizing and exporting stores.
export { type ConvertOptions, convert } from './store/convert.ts';
export { type ConversionReport, type DuplicateReport, type StoreInput, type WriteStoreOptions, writeStore } from './store/write.ts';
export { type Manifest, type Provenance, type ShardFile, type SplitInfo, type Stats, MANIFEST_FILE, readManifest } from './store/manifest.ts';
export { type BadShard, type VerifyResult, verifyStore } from './store/verify.ts';
export { exportSplit } from './store/export.ts';
export { type MergeOptions, type MergeReport, convertPart, mergeStores } from './store/parts.ts';
// Stores behind a URL (http(s)://, s3://): moving whole stores, and the options of a remote store.
export { pullStore, pushStore } from './store/transfer.ts';
export { readManifestAt } from './store/remote.ts';
export { type RemoteOptions, type RetryPolicy, RETRY_DEFAULTS } from './remote/index.ts';

// The batch generator.
export * from './loader/index.ts';

// Training.
export {
  type BackendInfo, type DataInput, type EpochLog, type EvalResult, type FitOptions, type History, type RunSummary, type TrainRunOptions,
  BUILTIN_MODELS, buildModel, compileDefault, evalRun, evaluate, evaluateLoader, fit, initBackend, loadModel, saveModel, trainEpochs, trainRun, writeReport,
  type BestWeightsStore, type CallbackInput, type CallbackLogs, type EarlyStoppingOptions, type KeepBestOptions, type LoopState, type LrSchedule, type ReduceLrOptions,
  EarlyStopping, KeepBest, LR_SCHEDULE_SYNTAX, ReduceLrOnPlateau, earlyStopping, keepBest, lrFactor, memoryWeightsStore, parseLrSchedule, reduceLrOnPlateau,
  type MpiWorld, mpiWorld,
} from './train/index.ts';
export type { BuiltinModel, ModelSpec } from './train/models.ts';

// Model interop: ONNX export (opset 13).
export { ONNX_ACTIVATIONS, ONNX_LAYERS, ONNX_OPSET, type OnnxIo, type OnnxOptions, exportOnnx, toOnnx } from './train/onnx.ts';
export { type ModelExport, MODEL_FORMATS, exportModel } from './train/export-model.ts';
