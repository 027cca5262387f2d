// 'slimfit/precision': number formats (fp16, bf16, fp8 e4m3/e5m2, fixed point, int8), quantization with nearest,
// stochastic or toward-zero rounding, and bit-exact encode/decode of the float formats.
export * from './formats.ts';
export { type Rng, createRng, fillU32 } from './rng.ts';
export * from './mx.ts';
