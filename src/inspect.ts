/**
 * `inspectModel(path)`: what a model file or directory holds — format, architecture, dimensions,
 * tensor types, parameter count, bytes, tokenizer, chat template — read from headers and metadata
 * only, never the weights.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileFormatError, UnsupportedModelError } from './errors.js';
import { readGgufHeader, type GgufValue } from './formats/gguf.js';
import { isHfModelDir, readHfConfig } from './formats/hf.js';
import { readLlama2cHeader } from './formats/llama2c.js';
import { isMetaCheckpointDir, metaHiddenDim, metaShards, readMetaParams } from './formats/meta.js';
import { openPth } from './formats/pth.js';
import { openSafetensors } from './formats/safetensors.js';
import { statFile } from './io/file.js';
import { parameterCount, type ModelConfig } from './model/config.js';
import { Tokenizer } from './tokenizer/tokenizer.js';

export interface ModelReport {
  path: string;
  format: string;
  architecture: string;
  config: Omit<ModelConfig, 'sharedClassifier'> & { tiedEmbeddings: boolean };
  /** Tensor type name → number of tensors. */
  tensorTypes: Record<string, number>;
  parameters: number;
  weightBytes: number;
  fileBytes: number;
  tokenizer: { type: string; vocabSize: number; path: string } | null;
  chatTemplate: boolean;
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export function inspectModel(p: string, opts: { tokenizerPath?: string } = {}): ModelReport {
  const isDir = fs.existsSync(p) && fs.statSync(p).isDirectory();
  if (isDir && isMetaCheckpointDir(p)) return inspectMeta(p, opts.tokenizerPath);
  if (isDir && isHfModelDir(p)) return inspectHf(p, opts.tokenizerPath);
  if (isDir) throw new UnsupportedModelError(`${p}: a directory without params.json or config.json is not a model llamats knows`);
  const size = statFile(p);
  const head = Buffer.alloc(Math.min(size, 4));
  const fd = fs.openSync(p, 'r');
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (head.toString('latin1') === 'GGUF') return inspectGguf(p);
  return inspectLlama2c(p, opts.tokenizerPath);
}

function tokenizerInfo(file: string | undefined): ModelReport['tokenizer'] {
  if (!file || !fs.existsSync(file)) return null;
  const t = Tokenizer.load(file);
  return { type: t.constructor.name.replace(/Tokenizer$/, '') || 'unknown', vocabSize: t.vocabSize, path: file };
}

function inspectLlama2c(p: string, tokenizerPath?: string): ModelReport {
  const h = readLlama2cHeader(p);
  const c = h.config;
  const headerBytes = h.version === 0 ? 28 : 256;
  const nMatrices = 7 * c.nLayers + (c.sharedClassifier ? 1 : 2);
  const tensorTypes: Record<string, number> = h.version === 2 ? { [`Q8 (llama2.c int8, group ${h.groupSize})`]: nMatrices, F32: 2 * c.nLayers + 1 } : { F32: nMatrices + 2 * c.nLayers + 1 };
  const { sharedClassifier, ...rest } = c;
  const beside = tokenizerPath ?? path.join(path.dirname(p), 'tokenizer.bin');
  return {
    path: p, format: `llama2.c v${h.version}`, architecture: 'llama',
    config: { ...rest, tiedEmbeddings: sharedClassifier },
    tensorTypes, parameters: parameterCount(c), weightBytes: h.fileSize - headerBytes, fileBytes: h.fileSize,
    tokenizer: tokenizerInfo(beside), chatTemplate: false,
  };
}

function meta(m: Map<string, GgufValue>, key: string): unknown {
  const v = m.get(key);
  if (!v) return undefined;
  return typeof v.value === 'bigint' ? Number(v.value) : v.value;
}

function inspectGguf(p: string): ModelReport {
  const h = readGgufHeader(p);
  const arch = String(meta(h.metadata, 'general.architecture') ?? 'unknown');
  const k = (name: string) => meta(h.metadata, `${arch}.${name}`) as number | undefined;
  const embd = h.tensors.find((t) => t.name === 'token_embd.weight');
  const tokens = meta(h.metadata, 'tokenizer.ggml.tokens') as readonly string[] | undefined;
  const dim = k('embedding_length') ?? 0;
  const nHeads = k('attention.head_count') ?? 1;
  const tensorTypes: Record<string, number> = {};
  for (const t of h.tensors) tensorTypes[t.typeName] = (tensorTypes[t.typeName] ?? 0) + 1;
  const model = meta(h.metadata, 'tokenizer.ggml.model');
  return {
    path: p, format: `GGUF v${h.version}`, architecture: arch,
    config: {
      dim, hiddenDim: k('feed_forward_length') ?? 0, nLayers: k('block_count') ?? 0, nHeads, nKvHeads: k('attention.head_count_kv') ?? nHeads,
      vocabSize: embd?.dims[1] ?? tokens?.length ?? 0, seqLen: k('context_length') ?? 0, headDim: dim / nHeads,
      normEps: k('attention.layer_norm_rms_epsilon') ?? 1e-5, ropeTheta: k('rope.freq_base') ?? 10000,
      tiedEmbeddings: !h.tensors.some((t) => t.name === 'output.weight'),
    },
    tensorTypes,
    parameters: h.tensors.reduce((a, t) => a + numel(t.dims), 0),
    weightBytes: h.tensors.reduce((a, t) => a + t.byteSize, 0),
    fileBytes: h.fileSize,
    tokenizer: tokens ? { type: `GGUF ${String(model)}`, vocabSize: tokens.length, path: p } : null,
    chatTemplate: h.metadata.has('tokenizer.chat_template'),
  };
}

function inspectMeta(dir: string, tokenizerPath?: string): ModelReport {
  const params = readMetaParams(dir);
  const tensorTypes: Record<string, number> = {};
  let parameters = 0;
  let weightBytes = 0;
  let fileBytes = 0;
  let vocabFromTensors = 0;
  const shards = metaShards(dir);
  for (const [rank, s] of shards.entries()) {
    fileBytes += statFile(s);
    const f = openPth(s);
    try {
      for (const t of f.tensors.values()) {
        if (rank === 0) tensorTypes[t.dtype] = (tensorTypes[t.dtype] ?? 0) + 1;
        parameters += numel(t.shape);
        weightBytes += t.byteLength;
        if (t.name === 'tok_embeddings.weight') vocabFromTensors = t.shape[0]!;
      }
    } finally {
      f.close();
    }
  }
  const tokFile = tokenizerPath ?? [path.join(dir, 'tokenizer.model'), path.join(dir, '..', 'tokenizer.model')].find((f) => fs.existsSync(f));
  const tokenizer = tokenizerInfo(tokFile);
  const vocabSize = params.vocab_size > 0 ? params.vocab_size : vocabFromTensors;
  return {
    path: dir, format: `Meta checkpoint (${shards.length} shard${shards.length > 1 ? 's' : ''})`, architecture: 'llama',
    config: {
      dim: params.dim, hiddenDim: metaHiddenDim(params), nLayers: params.n_layers, nHeads: params.n_heads, nKvHeads: params.n_kv_heads ?? params.n_heads,
      vocabSize, seqLen: 0, headDim: params.dim / params.n_heads, normEps: params.norm_eps, ropeTheta: params.rope_theta ?? 10000, tiedEmbeddings: false,
    },
    tensorTypes, parameters, weightBytes, fileBytes, tokenizer, chatTemplate: false,
  };
}

function inspectHf(dir: string, tokenizerPath?: string): ModelReport {
  const { config } = readHfConfig(dir);
  const tensorTypes: Record<string, number> = {};
  let parameters = 0;
  let weightBytes = 0;
  let fileBytes = 0;
  const files = fs.readdirSync(dir).sort();
  const st = files.filter((f) => f.endsWith('.safetensors'));
  const bins = files.filter((f) => /^pytorch_model.*\.bin$/.test(f));
  if (st.length === 0 && bins.length === 0) throw new FileFormatError(dir, 'no model.safetensors or pytorch_model.bin', { code: 'FILE_NOT_FOUND' });
  for (const f of st.length ? st : bins) {
    const file = path.join(dir, f);
    fileBytes += statFile(file);
    const r = st.length ? openSafetensors(file) : openPth(file);
    try {
      for (const t of r.tensors.values()) {
        tensorTypes[t.dtype] = (tensorTypes[t.dtype] ?? 0) + 1;
        parameters += numel(t.shape);
        weightBytes += t.byteLength;
      }
    } finally {
      r.close();
    }
  }
  const tokFile = tokenizerPath ?? ['tokenizer.json', 'tokenizer.model'].map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
  let chatTemplate = false;
  const tc = path.join(dir, 'tokenizer_config.json');
  if (fs.existsSync(tc)) {
    try {
      chatTemplate = Boolean((JSON.parse(fs.readFileSync(tc, 'utf8')) as { chat_template?: unknown }).chat_template);
    } catch {
      throw new FileFormatError(tc, 'is not valid JSON');
    }
  }
  const { sharedClassifier, ...rest } = config;
  return {
    path: dir, format: `Hugging Face (${st.length ? `${st.length} safetensors file${st.length > 1 ? 's' : ''}` : 'pytorch_model.bin'})`, architecture: 'llama',
    config: { ...rest, tiedEmbeddings: sharedClassifier }, tensorTypes, parameters, weightBytes, fileBytes,
    tokenizer: tokenizerInfo(tokFile), chatTemplate,
  };
}
