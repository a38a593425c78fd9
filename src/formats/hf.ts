/**
 * Hugging Face transformers model directories (`LlamaForCausalLM`): `config.json` and the weights in
 * one of, by preference (as transformers picks them):
 *   model.safetensors.index.json + shards    { "weight_map": { "<tensor>": "<shard file>", ... } }
 *   model.safetensors                        src/formats/safetensors.ts
 *   pytorch_model.bin.index.json + shards    the same index, shards are torch.save zips
 *   pytorch_model.bin                        src/formats/pth.ts
 *
 * config.json (LlamaConfig): architectures ["LlamaForCausalLM"] (or model_type "llama"),
 *   hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 *   num_key_value_heads (default num_attention_heads), vocab_size, rms_norm_eps (default 1e-6, as
 *   LlamaConfig), rope_theta (default 10000), rope_scaling (null, or type "llama3" for Llama 3.1),
 *   tie_word_embeddings (default false), max_position_embeddings (default 2048),
 *   bos_token_id, eos_token_id (a number or a list).
 *
 * Tensor names (linear weights are [out, in]) and their Meta equivalents:
 *   model.embed_tokens.weight [vocab, dim]               tok_embeddings
 *   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight     attention.{wq,wk,wv,wo}
 *   model.layers.{i}.mlp.{gate,up,down}_proj.weight      feed_forward.{w1,w3,w2}
 *   model.layers.{i}.input_layernorm.weight [dim]        attention_norm
 *   model.layers.{i}.post_attention_layernorm.weight     ffn_norm
 *   model.norm.weight [dim]                              norm
 *   lm_head.weight [vocab, dim]                          output (absent or tied: the embedding)
 *
 * RoPE layout. transformers' HF RoPE rotates the pairs (x[j], x[j + headDim/2]) of each head
 * (rotate_half), Meta's and ours the pairs (x[2j], x[2j+1]). convert_llama_weights_to_hf.py made
 * the two agree by permuting the rows of q_proj and k_proj within each head:
 *   hf = meta.view(nHeads, headDim/2, 2, dim).transpose(1, 2).reshape(nHeads * headDim, dim)
 * i.e. HF row h*headDim + r*headDim/2 + j is Meta row h*headDim + 2j + r (r = 0, 1). Loading
 * undoes it (nHeads for q, nKvHeads for k), moving whole rows: no dtype changes.
 *
 * Dtypes: F32 stays float32, F16 and BF16 stay 16-bit; norms become Float32Array.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileFormatError, UnsupportedModelError } from '../errors.js';
import { layerKvBytes, makeConfig, type ModelConfig, type RopeScaling } from '../model/config.js';
import { f32Matrix, half16Matrix, quantizeMatrix, toF32, type LoadQuantization, type Matrix } from '../model/tensor.js';
import type { LayerWeights, Model } from '../model/weights.js';
import { openPth } from './pth.js';
import { openSafetensors } from './safetensors.js';
import { hostPlacement, type Placement } from '../model/placement.js';
import { readJsonObjectFile } from '../io/json.js';

/** What config.json says: the model's config and the special tokens for the tokenizer side. */
export interface HfConfig {
  readonly config: ModelConfig;
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: number[];
}

const ARCHITECTURES = ['LlamaForCausalLM', 'LLaMAForCausalLM', 'LlamaModel'];

/** Is `dir` a Hugging Face model directory (has config.json)? */
export function isHfModelDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'config.json'));
}

/** Read and check config.json. `maxSeqLen` overrides max_position_embeddings as the context. */
export function readHfConfig(dir: string, opts: { maxSeqLen?: number } = {}): HfConfig {
  const file = path.join(dir, 'config.json');
  const p = readJsonObjectFile(file, 'no config.json: a Hugging Face model directory holds config.json and model.safetensors (or pytorch_model.bin)');
  const int = (k: string, dflt?: number): number => {
    const v = p[k] ?? dflt;
    if (v === undefined) throw new FileFormatError(file, `missing "${k}" (an integer)`);
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new FileFormatError(file, `"${k}" must be an integer; found ${JSON.stringify(v)}`);
    return v;
  };
  const num = (k: string, dflt: number | undefined, o: Record<string, unknown> = p, label = k): number => {
    const v = o[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new FileFormatError(file, `"${label}" must be a positive number; found ${JSON.stringify(v) ?? 'nothing'}`);
    return v;
  };
  const tokens = (k: string): number[] => {
    const v = p[k] ?? [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => Number.isInteger(x) && x >= 0)) throw new FileFormatError(file, `"${k}" must be a token id or a list of them; found ${JSON.stringify(v)}`);
    return list as number[];
  };

  // Which model: architectures names the class; old configs have only model_type.
  const archs = p.architectures;
  if (Array.isArray(archs) && archs.length > 0) {
    if (!archs.some((a) => ARCHITECTURES.includes(a as string))) {
      throw new UnsupportedModelError(`${file}: architecture ${archs.join(', ')} is not supported; llamats runs ${ARCHITECTURES[0]} models`);
    }
  } else if (p.model_type !== 'llama') {
    throw new UnsupportedModelError(`${file}: model_type ${JSON.stringify(p.model_type)} and no "architectures"; llamats runs LlamaForCausalLM models (model_type "llama")`);
  }
  // Variants that the Llama class supports but our forward pass does not: refuse, never ignore.
  if (p.attention_bias === true || p.mlp_bias === true) throw new UnsupportedModelError(`${file}: attention_bias / mlp_bias are true; llamats runs Llama models without biases`);
  if (p.hidden_act !== undefined && p.hidden_act !== 'silu') throw new UnsupportedModelError(`${file}: hidden_act ${JSON.stringify(p.hidden_act)} is not supported; expected "silu"`);

  let ropeScaling: RopeScaling | undefined;
  const rs = p.rope_scaling;
  if (rs !== undefined && rs !== null) {
    if (!isObject(rs)) throw new FileFormatError(file, `"rope_scaling" must be an object or null; found ${JSON.stringify(rs)}`);
    const type = rs.rope_type ?? rs.type;
    if (type === 'llama3') {
      ropeScaling = {
        factor: num('factor', undefined, rs, 'rope_scaling.factor'),
        lowFreqFactor: num('low_freq_factor', undefined, rs, 'rope_scaling.low_freq_factor'),
        highFreqFactor: num('high_freq_factor', undefined, rs, 'rope_scaling.high_freq_factor'),
        originalMaxPositionEmbeddings: num('original_max_position_embeddings', undefined, rs, 'rope_scaling.original_max_position_embeddings'),
      };
    } else if (type !== 'default') {
      throw new UnsupportedModelError(`${file}: rope_scaling type ${JSON.stringify(type)} is not supported; llamats supports "llama3" (Llama 3.1) only`);
    }
  }

  const nHeads = int('num_attention_heads');
  const dim = int('hidden_size');
  if (p.head_dim != null && p.head_dim !== dim / nHeads) {
    throw new UnsupportedModelError(`${file}: head_dim ${JSON.stringify(p.head_dim)} differs from hidden_size / num_attention_heads = ${dim / nHeads}; llamats needs them equal`);
  }
  const config = makeConfig(file, {
    dim,
    hiddenDim: int('intermediate_size'),
    nLayers: int('num_hidden_layers'),
    nHeads,
    nKvHeads: int('num_key_value_heads', nHeads),
    vocabSize: int('vocab_size'),
    seqLen: opts.maxSeqLen ?? int('max_position_embeddings', 2048),
    sharedClassifier: p.tie_word_embeddings === true,
    normEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    ...(ropeScaling ? { ropeScaling } : {}),
  });
  return { config, bosTokenId: tokens('bos_token_id')[0], eosTokenIds: tokens('eos_token_id') };
}

/** One weights file: a safetensors file or a torch.save checkpoint, with the same small interface. */
interface TensorFile {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, { readonly dtype: string; readonly shape: number[] }>;
  read(name: string): Uint8Array;
  close(): void;
}

/** Find the weights files: name → the file holding it. `where` names the index or file for messages. */
function openWeights(dir: string): { files: TensorFile[]; fileOf: Map<string, TensorFile>; where: string } {
  const open = (f: string): TensorFile => (f.endsWith('.safetensors') ? openSafetensors(f) : openPth(f));
  const files: TensorFile[] = [];
  const fileOf = new Map<string, TensorFile>();
  try {
    for (const [index, single] of [['model.safetensors.index.json', 'model.safetensors'], ['pytorch_model.bin.index.json', 'pytorch_model.bin']] as const) {
      const indexPath = path.join(dir, index);
      if (fs.existsSync(indexPath)) {
        const weightMap = readIndex(indexPath);
        const shards = new Map<string, TensorFile>();
        // Check that every shard exists before opening any.
        for (const shard of new Set(weightMap.values())) {
          const f = path.join(dir, shard);
          if (!fs.existsSync(f)) throw new FileFormatError(f, `missing shard: ${index} maps tensors to it, but there is no such file; download all the shards`, { code: 'FILE_NOT_FOUND' });
        }
        for (const [name, shard] of weightMap) {
          if (!shards.has(shard)) {
            const f = open(path.join(dir, shard));
            files.push(f);
            shards.set(shard, f);
          }
          const f = shards.get(shard)!;
          if (!f.tensors.has(name)) throw new FileFormatError(f.path, `has no tensor "${name}", but ${index} says it holds it`);
          fileOf.set(name, f);
        }
        return { files, fileOf, where: indexPath };
      }
      const singlePath = path.join(dir, single);
      if (fs.existsSync(singlePath)) {
        const f = open(singlePath);
        files.push(f);
        for (const name of f.tensors.keys()) fileOf.set(name, f);
        return { files, fileOf, where: singlePath };
      }
    }
  } catch (e) {
    for (const f of files) f.close();
    throw e;
  }
  throw new FileFormatError(dir, 'has config.json but no weights: expected model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json', { code: 'FILE_NOT_FOUND' });
}

/** The weight_map of an index file: tensor name → shard file name (in the same directory). */
function readIndex(file: string): Map<string, string> {
  const wm = readJsonObjectFile(file, 'the index file is missing').weight_map;
  if (!isObject(wm)) throw new FileFormatError(file, 'expected a JSON object with "weight_map": { tensor name: shard file }');
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm)) {
    if (typeof shard !== 'string' || shard === '' || path.basename(shard) !== shard || shard === '..') {
      throw new FileFormatError(file, `weight_map maps "${name}" to ${JSON.stringify(shard)}; expected the name of a file in the same directory`);
    }
    out.set(name, shard);
  }
  return out;
}

/** Load a Hugging Face Llama directory. `maxSeqLen` overrides max_position_embeddings. */
export function loadHfModel(dir: string, opts: { maxSeqLen?: number; quantize?: LoadQuantization; placement?: Placement } = {}): Model {
  const { config: c } = readHfConfig(dir, opts);
  const { files, fileOf, where } = openWeights(dir);
  try {
    const used = new Set<string>();
    // Each weight goes once into its final place (a tensor at a time passes through a read buffer).
    const placement = opts.quantize ? hostPlacement : (opts.placement ?? hostPlacement);
    const tied = c.sharedClassifier || !fileOf.has('lm_head.weight');
    const bytesOf = (name: string) => {
      const t = fileOf.get(name)?.tensors.get(name);
      return t ? t.shape.reduce((a, b) => a * b, 1) * (t.dtype === 'F32' ? 4 : 2) : 0;
    };
    const layerNames = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.down_proj', 'mlp.up_proj'];
    placement.plan(
      Array.from({ length: c.nLayers }, (_, i) => layerNames.reduce((n, t) => n + bytesOf(`model.layers.${i}.${t}.weight`), 0)),
      bytesOf(tied ? 'model.embed_tokens.weight' : 'lm_head.weight'),
      layerKvBytes(c),
    );
    let where_: number | 'head' | 'host' = 'host'; // where `get` puts the next tensor
    // A tensor as a matrix of the shape config.json implies; `heads` = undo the q/k permutation.
    const get = (name: string, rows: number, cols: number, heads = 0): Matrix => {
      const f = fileOf.get(name);
      if (!f) throw new FileFormatError(where, `missing tensor ${name}`);
      used.add(name);
      const { dtype, shape } = f.tensors.get(name)!;
      const size = dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : 0;
      if (size === 0) throw new UnsupportedModelError(`${f.path}: tensor ${name} has dtype ${dtype}; llamats reads F32, BF16 and F16`);
      const want = rows === 1 ? [cols] : [rows, cols];
      if (shape.length !== want.length || shape.some((n, i) => n !== want[i])) {
        throw new FileFormatError(f.path, `${name} has shape [${shape.join(', ')}], but config.json implies [${want.join(', ')}]; config.json disagrees with the tensors`);
      }
      const read = f.read(name);
      const bytes = (rows === 1 ? hostPlacement : placement).alloc(read.byteLength, where_);
      if (heads) unpermuteRows(read, heads, rows / heads, cols * size, bytes);
      else bytes.set(read);
      const m = dtype === 'F32'
        ? f32Matrix(new Float32Array(bytes.buffer, bytes.byteOffset, rows * cols), rows, cols)
        : half16Matrix(dtype === 'BF16' ? 'bf16' : 'f16', new Uint16Array(bytes.buffer, bytes.byteOffset, rows * cols), rows, cols);
      // with opts.quantize each weight is quantized as soon as it is read: one full-precision tensor at a time
      return opts.quantize ? quantizeMatrix(m, opts.quantize) : m;
    };
    const vector = (name: string): Float32Array => toF32(get(name, 1, c.dim));
    const kv = c.nKvHeads * c.headDim;
    const layers: LayerWeights[] = [];
    for (let i = 0; i < c.nLayers; i++) {
      const pre = `model.layers.${i}`;
      where_ = i;
      layers.push({
        attnNorm: vector(`${pre}.input_layernorm.weight`),
        wq: get(`${pre}.self_attn.q_proj.weight`, c.dim, c.dim, c.nHeads),
        wk: get(`${pre}.self_attn.k_proj.weight`, kv, c.dim, c.nKvHeads),
        wv: get(`${pre}.self_attn.v_proj.weight`, kv, c.dim),
        wo: get(`${pre}.self_attn.o_proj.weight`, c.dim, c.dim),
        ffnNorm: vector(`${pre}.post_attention_layernorm.weight`),
        w1: get(`${pre}.mlp.gate_proj.weight`, c.hiddenDim, c.dim),
        w2: get(`${pre}.mlp.down_proj.weight`, c.dim, c.hiddenDim),
        w3: get(`${pre}.mlp.up_proj.weight`, c.hiddenDim, c.dim),
      });
    }
    where_ = tied ? 'head' : 'host';
    const tokenEmbedding = get('model.embed_tokens.weight', c.vocabSize, c.dim);
    where_ = 'head';
    const classifier = tied ? tokenEmbedding : get('lm_head.weight', c.vocabSize, c.dim);
    const weights = { tokenEmbedding, layers, finalNorm: vector('model.norm.weight'), classifier };

    // A tensor we would not use means a model we would run wrongly: refuse it.
    for (const [name, f] of fileOf) {
      if (used.has(name) || name === 'lm_head.weight' || name.endsWith('.rotary_emb.inv_freq')) continue;
      const layer = /^model\.layers\.(\d+)\./.exec(name);
      if (layer && Number(layer[1]) >= c.nLayers) {
        throw new FileFormatError(f.path, `has tensor ${name}, but config.json says num_hidden_layers is ${c.nLayers}; config.json disagrees with the tensors`);
      }
      throw new UnsupportedModelError(`${f.path}: tensor ${name} is not part of a Llama model; llamats would ignore it and compute something else`);
    }
    const config = tied === c.sharedClassifier ? c : { ...c, sharedClassifier: tied };
    const dtype = layers[0]?.wq.type ?? 'f32';
    const what = files.length > 1 ? `${files.length} shards` : path.basename(files[0]!.path);
    return { config, weights, source: { path: dir, format: `Hugging Face (${what}, ${dtype})` } };
  } finally {
    for (const f of files) f.close();
  }
}

/**
 * Undo convert_llama_weights_to_hf.py's permutation of q_proj / k_proj (see the top of the file):
 * within each head, HF row r*half + j goes back to row 2j + r. Rows are moved as bytes.
 */
export function unpermuteRows(hf: Uint8Array, nHeads: number, headDim: number, rowBytes: number, out: Uint8Array = new Uint8Array(hf.byteLength)): Uint8Array {
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let r = 0; r < 2; r++) {
      for (let j = 0; j < half; j++) {
        const from = (h * headDim + r * half + j) * rowBytes;
        out.set(hf.subarray(from, from + rowBytes), (h * headDim + 2 * j + r) * rowBytes);
      }
    }
  }
  return out;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

