/**
 * Memory planned before loading: from a model's headers alone (`inspectModel`), the bytes it will
 * need — weights as they will sit in memory, the backend's copy of them, the KV cache for the
 * context × sequences, activations and scratch — against what this machine can give (the
 * smaller of /proc/meminfo's MemAvailable and the cgroup's limit). When it does not fit: by how
 * much, and which choices fit (quantize on load, a shorter context, fewer sequences). Nothing
 * is loaded here; `fitModel` applies the first choice that fits for `--fit auto`.
 */
import * as path from 'node:path';
import { readMemory } from './doctor.js';
import { formatBytes, OutOfMemoryError } from './errors.js';
import { inspectModel, type ModelReport } from './inspect.js';
import type { LoadQuantization } from './model/tensor.js';

export interface MemoryInfo {
  /** Bytes this process may still use. */
  available: number;
  /** Where that number comes from. */
  source: string;
}

/**
 * What this process may still use: MemAvailable, limited by its cgroup's limit minus usage (read
 * as `llamats doctor` reads them), and by LLAMATS_MEMORY_LIMIT (bytes) when set — a cap for users
 * who share the machine, and for tests.
 */
export function readMemoryInfo(roots: { procRoot?: string; sysRoot?: string; env?: NodeJS.ProcessEnv } = {}): MemoryInfo {
  const proc = roots.procRoot ?? '/proc';
  const m = readMemory(proc, roots.sysRoot ?? '/sys');
  let available = m.availableBytes ?? Number.POSITIVE_INFINITY;
  let source = m.availableBytes === null ? 'unknown' : `MemAvailable in ${path.join(proc, 'meminfo')}`;
  if (m.cgroupLimitBytes !== null && m.availableBytes !== null && m.availableBytes < (m.totalBytes ?? Infinity) && m.cgroupLimitBytes < (m.totalBytes ?? Infinity)) {
    source = `MemAvailable and the cgroup v${m.cgroupVersion} limit of ${formatBytes(m.cgroupLimitBytes)}`;
  }
  const cap = (roots.env ?? process.env).LLAMATS_MEMORY_LIMIT;
  if (cap && /^\d+$/.test(cap) && Number(cap) < available) {
    available = Number(cap);
    source = 'LLAMATS_MEMORY_LIMIT';
  }
  return { available, source };
}

export interface PlanOptions {
  /** Positions per sequence (the context to allocate). Default: the model's context. */
  ctx?: number;
  /** Sequences decoded at once (KV caches). Default 1. */
  batch?: number;
  /** Quantize the weights on load. */
  quantize?: LoadQuantization;
  /** Memory to plan against (tests); default: readMemoryInfo(). */
  memory?: MemoryInfo;
}

export interface PlanRow {
  item: string;
  bytes: number;
}

export interface MemoryPlan {
  model: ModelReport;
  ctx: number;
  batch: number;
  quantize: LoadQuantization | undefined;
  rows: PlanRow[];
  needed: number;
  memory: MemoryInfo;
  fits: boolean;
  /** Other settings that fit, best first (empty when this one fits). */
  choices: Array<{ description: string; options: { quantize?: LoadQuantization; ctx: number; batch: number }; needed: number }>;
}

/** One WebAssembly memory (the wasm backend copies the weights into one; bigger models run on ref). */
const WASM_MEMORY = 4 * 1024 ** 3;
/** Node.js itself, code and the JIT. */
const RUNTIME = 80 * 1024 ** 2;
/** Kept free for the rest of the machine. */
const MARGIN = 0.05;

function matrixParams(r: ModelReport): { matrices: number; norms: number } {
  const c = r.config;
  const kv = c.nKvHeads * c.headDim;
  const matrices = c.vocabSize * c.dim * (c.tiedEmbeddings ? 1 : 2) + c.nLayers * (2 * c.dim * c.dim + 2 * kv * c.dim + 3 * c.dim * c.hiddenDim);
  return { matrices, norms: (2 * c.nLayers + 1) * c.dim };
}

/** The plan for one setting. */
export function planMemory(model: string | ModelReport, opts: PlanOptions = {}): MemoryPlan {
  const r = typeof model === 'string' ? inspectModel(model) : model;
  const c = r.config;
  const ctx = opts.ctx ?? (c.seqLen || 2048);
  const batch = opts.batch ?? 1;
  const memory = opts.memory ?? readMemoryInfo();
  const rows = planRows(r, ctx, batch, opts.quantize);
  const needed = rows.reduce((a, x) => a + x.bytes, 0);
  const fits = needed <= memory.available * (1 - MARGIN);
  const plan: MemoryPlan = { model: r, ctx, batch, quantize: opts.quantize, rows, needed, memory, fits, choices: [] };
  if (!fits) plan.choices = choices(r, ctx, batch, opts.quantize, memory);
  return plan;
}

function planRows(r: ModelReport, ctx: number, batch: number, quantize: LoadQuantization | undefined): PlanRow[] {
  const c = r.config;
  const { matrices, norms } = matrixParams(r);
  const kv = c.nKvHeads * c.headDim;
  const stored = r.weightBytes;
  const perWeight = quantize === 'q8_0' ? 34 / 32 : quantize === 'q4_0' ? 18 / 32 : undefined;
  const weights = perWeight && perWeight * matrices < stored ? Math.ceil(perWeight * matrices + 4 * norms) : stored;
  const rows: PlanRow[] = [{ item: `weights (${Object.keys(r.tensorTypes).join(', ')}${weights !== stored ? ` → ${quantize!.toUpperCase()} on load` : ''})`, bytes: weights }];
  // a llama2.c file is read whole before it is quantized
  if (weights !== stored && r.format.startsWith('llama2.c')) rows.push({ item: 'the llama2.c file while it is quantized', bytes: stored });
  if (weights < WASM_MEMORY * 0.9) rows.push({ item: "wasm backend's copy of the weights", bytes: weights });
  rows.push({ item: `KV cache (float32, ${batch} × ${ctx} positions)`, bytes: 2 * c.nLayers * ctx * kv * 4 * batch });
  rows.push({ item: 'activations and scratch', bytes: 4 * batch * (6 * c.dim + 2 * c.hiddenDim + 2 * kv + 3 * c.vocabSize + ctx) });
  rows.push({ item: 'runtime (Node.js)', bytes: RUNTIME });
  return rows;
}

function choices(r: ModelReport, ctx: number, batch: number, quantize: LoadQuantization | undefined, memory: MemoryInfo): MemoryPlan['choices'] {
  const out: MemoryPlan['choices'] = [];
  const limit = memory.available * (1 - MARGIN);
  const need = (q: LoadQuantization | undefined, x: number, b: number) => planRows(r, x, b, q).reduce((a, y) => a + y.bytes, 0);
  const types: Array<LoadQuantization | undefined> = [quantize, ...(['q8_0', 'q4_0'] as const).filter((q) => q !== quantize && (quantize !== 'q4_0'))];
  for (const q of types) {
    const label = q ? `weights quantized to ${q.toUpperCase()} on load` : 'the weights as stored';
    if (q !== quantize && need(q, ctx, batch) <= limit) out.push({ description: label, options: { ...(q ? { quantize: q } : {}), ctx, batch }, needed: need(q, ctx, batch) });
    // the longest context that fits with these weights
    let lo = 0;
    for (let x = ctx; x >= 128; x = Math.floor(x / 2)) if (need(q, x, batch) <= limit) { lo = x; break; }
    if (lo > 0 && lo < ctx) out.push({ description: `${label}, context ${lo}`, options: { ...(q ? { quantize: q } : {}), ctx: lo, batch }, needed: need(q, lo, batch) });
    if (batch > 1) {
      for (let b = batch - 1; b >= 1; b--) if (need(q, ctx, b) <= limit) { out.push({ description: `${label}, ${b} sequence${b > 1 ? 's' : ''}`, options: { ...(q ? { quantize: q } : {}), ctx, batch: b }, needed: need(q, ctx, b) }); break; }
    }
  }
  return out;
}

/** The plan as a table, for `llamats plan`. */
export function formatPlan(p: MemoryPlan): string {
  const w = Math.max(...p.rows.map((r) => r.item.length), 20);
  const lines = [`${p.model.path}: ${p.model.format}, ${(p.model.parameters / 1e6).toFixed(1)}M parameters; context ${p.ctx}, ${p.batch} sequence${p.batch > 1 ? 's' : ''}`, ''];
  for (const r of p.rows) lines.push(`  ${r.item.padEnd(w)}  ${formatBytes(r.bytes).padStart(10)}`);
  lines.push(`  ${'total'.padEnd(w)}  ${formatBytes(p.needed).padStart(10)}`);
  lines.push(`  ${'available'.padEnd(w)}  ${formatBytes(p.memory.available).padStart(10)}  (${p.memory.source})`, '');
  if (p.fits) lines.push('fits.');
  else {
    lines.push(`does not fit: ${formatBytes(p.needed - p.memory.available * (1 - MARGIN))} short (keeping ${MARGIN * 100}% free).`);
    lines.push(p.choices.length ? 'Choices that fit (`--fit auto` takes the first):' : 'Nothing fits on this machine: a smaller model is needed.');
    for (const c of p.choices) lines.push(`  - ${c.description}: ${formatBytes(c.needed)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Before loading: the settings to load with. A setting that fits is kept; otherwise with
 * `fit: 'auto'` the first choice that fits is taken and `note` says what and why; otherwise an
 * OutOfMemoryError with the numbers and the choices — nothing has been loaded.
 */
export function fitModel(
  model: string | ModelReport,
  opts: { ctx: number; batch?: number; quantize?: LoadQuantization; fit?: 'auto' | 'check'; memory?: MemoryInfo },
): { ctx: number; batch: number; quantize?: LoadQuantization; note?: string } {
  const p = planMemory(model, opts);
  const base = { ctx: p.ctx, batch: p.batch, ...(p.quantize ? { quantize: p.quantize } : {}) };
  if (p.fits) return base;
  const first = p.choices[0];
  if (opts.fit === 'auto' && first) {
    return {
      ...first.options,
      note: `--fit auto: ${formatBytes(p.needed)} needed but ${formatBytes(p.memory.available)} available (${p.memory.source}); loading with ${first.description} (${formatBytes(first.needed)})`,
    };
  }
  throw new OutOfMemoryError(
    `${p.model.path} needs ${formatBytes(p.needed)} (context ${p.ctx}, ${p.batch} sequence${p.batch > 1 ? 's' : ''}) but ${formatBytes(p.memory.available)} is available (${p.memory.source}); ` +
      (first ? `choices that fit: ${p.choices.map((c) => c.description).join('; ')} — pass --fit auto to take the first, or see 'llamats plan'` : 'nothing fits: use a smaller model'),
    p.needed,
    p.memory.available,
  );
}
