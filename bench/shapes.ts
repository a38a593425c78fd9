/** Real model shapes for random-weight benchmark checkpoints (values do not change speed). */
import type { ModelShape } from '../src/index.js';

export const SHAPES: Record<string, ModelShape> = {
  // karpathy/tinyllamas stories15M.bin and stories110M.bin (llama2.c README)
  stories15M: { dim: 288, hiddenDim: 768, nLayers: 6, nHeads: 6, nKvHeads: 6, vocabSize: 32000, seqLen: 256, sharedClassifier: true },
  stories110M: { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000, seqLen: 1024, sharedClassifier: true },
};
