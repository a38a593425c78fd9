/**
 * run.c's sampler, bit for bit: greedy argmax at temperature 0; otherwise logits / temperature,
 * softmax, and either multinomial sampling (topp ≤ 0 or ≥ 1) or top-p (nucleus) sampling, each
 * drawing one coin from run.c's xorshift generator. All arithmetic is float32, as in C, so that a
 * seed gives run.c's tokens.
 */
import { argmax } from '../backend/ref/ops.js';
import { InvalidArgumentError } from '../errors.js';

const MASK64 = (1n << 64n) - 1n;
const f = Math.fround;

/** xorshift64* as in run.c: `random_u32` and `random_f32`. */
export class XorShiftRng {
  private state: bigint;

  /** Any integer seed; it is taken modulo 2^64, like C's unsigned long long. 0 is refused (the generator would stay at 0). */
  constructor(seed: number | bigint) {
    const s = BigInt.asUintN(64, BigInt(seed));
    if (s === 0n) throw new InvalidArgumentError('the random seed must not be 0 (xorshift would only produce zeros)', 'seed');
    this.state = s;
  }

  nextU32(): number {
    let s = this.state;
    s ^= s >> 12n;
    s ^= (s << 25n) & MASK64;
    s ^= s >> 27n;
    this.state = s;
    return Number(((s * 0x2545f4914f6cdd1dn) & MASK64) >> 32n);
  }

  /** Uniform in [0, 1): the top 24 bits, so the value is exact in float32. */
  nextF32(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }
}

export interface SamplerOptions {
  /** 0 = greedy (argmax). Default 1.0. */
  readonly temperature?: number;
  /** Nucleus mass in [0, 1]; 0 or 1 = plain multinomial sampling. Default 0.9. */
  readonly topp?: number;
  /** Default: the current time in seconds, like run.c. */
  readonly seed?: number | bigint;
}

export class Sampler {
  readonly vocabSize: number;
  readonly temperature: number;
  readonly topp: number;
  readonly rng: XorShiftRng;
  private readonly scratch: Float64Array; // top-p sort keys

  constructor(vocabSize: number, opts: SamplerOptions = {}) {
    const temperature = opts.temperature ?? 1.0;
    const topp = opts.topp ?? 0.9;
    if (!Number.isFinite(temperature) || temperature < 0) {
      throw new InvalidArgumentError(`temperature must be a number ≥ 0; got ${temperature}`, 'temperature');
    }
    if (!Number.isFinite(topp) || topp < 0 || topp > 1) {
      throw new InvalidArgumentError(`top-p must be a number in [0, 1]; got ${topp}`, 'topp');
    }
    this.vocabSize = vocabSize;
    this.temperature = f(temperature); // run.c keeps both in float
    this.topp = f(topp);
    this.rng = new XorShiftRng(opts.seed ?? Math.floor(Date.now() / 1000));
    this.scratch = new Float64Array(vocabSize);
  }

  /** The next token. Like run.c, this overwrites `logits` with probabilities when temperature > 0. */
  sample(logits: Float32Array): number {
    const n = this.vocabSize;
    if (this.temperature === 0) return argmax(logits, n);
    for (let i = 0; i < n; i++) logits[i] = logits[i]! / this.temperature;
    softmaxF32(logits, n);
    const coin = this.rng.nextF32();
    if (this.topp <= 0 || this.topp >= 1) return sampleMult(logits, n, coin);
    return sampleTopp(logits, n, this.topp, coin, this.scratch);
  }
}

/** Index of the first largest value: the reference op (src/backend/ref/ops.ts). */
export { argmax };

/** Softmax with float32 sums, as run.c's `softmax`. */
export function softmaxF32(x: Float32Array, n: number): void {
  let max = x[0]!;
  for (let i = 1; i < n; i++) if (x[i]! > max) max = x[i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    x[i] = Math.exp(f(x[i]! - max));
    sum = f(sum + x[i]!);
  }
  for (let i = 0; i < n; i++) x[i] = x[i]! / sum;
}

/** The first index where the running sum of probabilities exceeds `coin` (run.c `sample_mult`). */
export function sampleMult(probs: Float32Array, n: number, coin: number): number {
  let cdf = 0;
  for (let i = 0; i < n; i++) {
    cdf = f(cdf + probs[i]!);
    if (coin < cdf) return i;
  }
  return n - 1; // rounding errors
}

/**
 * Top-p sampling (run.c `sample_topp`): drop tokens below (1 - topp) / (n - 1), which cannot be
 * part of the nucleus; sort the rest by probability, descending; keep the shortest prefix whose
 * mass exceeds topp; sample in it with the coin scaled by that mass.
 */
export function sampleTopp(probs: Float32Array, n: number, topp: number, coin: number, scratch: Float64Array = new Float64Array(n)): number {
  const cutoff = f(f(1 - topp) / (n - 1));
  const sorted = sortByProbability(probs, n, cutoff, scratch);
  let cum = 0;
  let last = sorted.count - 1;
  for (let i = 0; i < sorted.count; i++) {
    cum = f(cum + probs[sorted.index(i)]!);
    if (cum > topp) {
      last = i;
      break;
    }
  }
  const r = f(coin * cum);
  let cdf = 0;
  for (let i = 0; i <= last; i++) {
    cdf = f(cdf + probs[sorted.index(i)]!);
    if (r < cdf) return sorted.index(i);
  }
  return sorted.index(last);
}

/**
 * The indices i with probs[i] ≥ minProb, by probability descending and, for equal probabilities,
 * index ascending (what glibc's stable qsort gives run.c). Sort keys pack the probability's float32
 * bits (monotonic for non-negative floats) above the reversed index, so one native numeric sort
 * does it — several times faster than sorting with a comparator.
 */
export function sortByProbability(probs: Float32Array, n: number, minProb: number, scratch: Float64Array): { count: number; index: (rank: number) => number } {
  let count = 0;
  for (let i = 0; i < n; i++) {
    const p = probs[i]!;
    if (p >= minProb) {
      F32[0] = p;
      scratch[count++] = U32[0]! * INDEX_SPAN + (INDEX_SPAN - 1 - i);
    }
  }
  const keys = scratch.subarray(0, count).sort();
  return { count, index: (rank) => INDEX_SPAN - 1 - (keys[count - 1 - rank]! % INDEX_SPAN) };
}

const INDEX_SPAN = 1 << 22; // > any vocabulary size (CONFIG_LIMITS.vocabSize)
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
