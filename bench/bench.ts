/**
 * `npm run bench`: llamats next to llama.cpp on the same GGUF files, in one command.
 *
 * For random-weight GGUF files with real shapes (gen-models.ts: stories15M and stories110M in
 * F32 / F16 / Q8_0 / Q4_0, TinyLlama-1.1B in F16 / Q8_0 / Q4_0 — its F32 is larger than one
 * 4 GiB WebAssembly memory — and with --7b Llama-2-7B in Q8_0 / F16), each measurement in a fresh
 * child process:
 *   - llamats (wasm backend) on each thread count: load time (read + parse + weights into the
 *     backend) next to the time to read the file, greedy decode tok/s from BOS (the clock starts
 *     after the first step), prefill tok/s of a 512-token prompt (after a 64-token warm-up
 *     prefill), peak RSS (VmHWM);
 *   - llama.cpp through node-llama-cpp (its prebuilt CPU build) on 1 and 2 threads: decode and
 *     prefill the same way, on the same file;
 *   - the memory-bandwidth bound: weight bytes read per token over the read bandwidth measured in
 *     the same command (a SIMD kernel streaming 256 MiB on 1 and on 2 threads).
 * Ratios: llamats over llama.cpp's better thread count, and over the bound.
 *
 * Usage: node dist/bench/bench.js [--threads 1,2] [--steps N] [--prefill N] [--models a,b]
 *                                 [--7b] [--no-llamacpp] [--no-write]
 * Writes docs/PERFORMANCE.md (between the bench markers) unless --no-write.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { argmax, loadModel, Session } from '../src/index.js';
import { kvCacheBytes } from '../src/model/forward.js';
import { matrixBytes } from '../src/model/tensor.js';
import { wasmBackend } from '../src/backend/wasm/wasm.js';
import { kernelVariant } from '../src/backend/wasm/loader.js';
import { ensureGguf } from './gen-models.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const GiB = 2 ** 30;

/**
 * The files: shape × weight type (F32 where it fits this 24 GB machine next to the page cache).
 * Llama-2-7B (--7b) runs fewer decode steps and a shorter prompt: at F16 a token takes seconds.
 */
const FILES: Array<{ shape: string; types: string[]; big?: { steps: number; prefill: number } }> = [
  { shape: 'stories15M', types: ['F32', 'F16', 'Q8_0', 'Q4_0'] },
  { shape: 'stories110M', types: ['F32', 'F16', 'Q8_0', 'Q4_0'] },
  { shape: 'TinyLlama-1.1B', types: ['F32', 'F16', 'Q8_0', 'Q4_0'] },
  { shape: 'Llama-2-7B', types: ['Q8_0', 'Q4_0', 'F16'], big: { steps: 16, prefill: 64 } },
];

interface Ours {
  threads: number;
  backend: string;
  weightBytes: number; // read per token: every matrix but the embedding table
  fileWeightBytes: number; // every tensor
  kvBytes: number;
  readMs: number;
  loadMs: number;
  decode: number;
  prefill: number;
  peakRssMiB: number;
  baseRssMiB: number; // VmRSS of the child before it loads anything (Node, the modules, the kernels)
}

interface Theirs {
  threads: number;
  loadMs: number;
  decode: number;
  prefill: number;
  peakRssMiB: number;
}

/** Tokens of the warm-up prefill before the timed one, on both sides. */
const WARMUP = 64;
/**
 * Timed passes of decode and of prefill in each child, the best one kept, on both sides: this
 * machine's speed moves under a run (a Llama-2-7B Q4_0 decode gave 3.9 tok/s in one bench run and
 * 4.9 standalone right after; steps of 157–274 ms within one process).
 */
const PASSES = 2;
/** A deterministic prompt of `n` token ids (not special tokens). */
const promptIds = (n: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + 13) % 31000));

/** Child: llamats on one file. */
function measureOurs(file: string, threads: number, steps: number, prefill: number): Ours {
  const ctx = Math.max(steps, prefill);
  const baseRssMiB = rssKiB() / 1024;
  const l0 = performance.now();
  const model = loadModel(file, { maxSeqLen: ctx });
  const session = new Session(model, { maxSeqLen: ctx, backend: 'wasm', threads });
  const loadMs = performance.now() - l0;
  const w = model.weights;
  const mats = new Set([w.classifier, ...w.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3])]);
  const weightBytes = [...mats].reduce((a, m) => a + matrixBytes(m), 0);
  const fileWeightBytes = weightBytes + (mats.has(w.tokenEmbedding) ? 0 : matrixBytes(w.tokenEmbedding));
  // decode, like run.c -t 0: BOS, then greedy; the clock starts after the first step (each pass
  // from position 0 again: the cache is overwritten)
  let decode = 0;
  for (let pass = 0; pass < PASSES; pass++) {
    let token = 1;
    let start = 0;
    for (let pos = 0; pos < steps; pos++) {
      token = argmax(session.forward(token, pos));
      if (pos === 0) start = performance.now();
    }
    decode = Math.max(decode, ((steps - 1) / (performance.now() - start)) * 1000);
  }
  // prefill: the prompt's positions from 0 (the cache is overwritten), after a warm-up prefill of
  // one chunk (llama.cpp's side gets the same; V8 optimizes the batched path's code on first use)
  session.prefill(promptIds(Math.min(WARMUP, prefill)), 0);
  let prefillTps = 0;
  for (let pass = 0; pass < PASSES; pass++) {
    const p0 = performance.now();
    session.prefill(promptIds(prefill), 0);
    prefillTps = Math.max(prefillTps, (prefill / (performance.now() - p0)) * 1000);
  }
  const peakRssMiB = peakRssKiB() / 1024; // before the read below
  const r0 = performance.now();
  readFileFresh(file);
  const readMs = performance.now() - r0;
  return {
    threads, backend: session.backend, weightBytes, fileWeightBytes, kvBytes: kvCacheBytes(model.config, ctx), readMs, loadMs, decode,
    prefill: prefillTps, peakRssMiB, baseRssMiB,
  };
}

/**
 * Read the whole file into fresh memory, as a loader must (page faults included), in buffers of
 * at most 1 GiB (one typed array cannot hold a 7 GB file), each dropped after it is filled.
 */
function readFileFresh(file: string): void {
  const size = fs.statSync(file).size;
  const fd = fs.openSync(file, 'r');
  try {
    for (let off = 0; off < size; ) {
      const buf = new Uint8Array(Math.min(GiB, size - off));
      for (let got = 0; got < buf.length; ) got += fs.readSync(fd, buf, got, Math.min(64 << 20, buf.length - got), off + got);
      off += buf.length;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Child: llama.cpp (node-llama-cpp) on one file. */
async function measureTheirs(file: string, threads: number, steps: number, prefill: number): Promise<Theirs> {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  const l0 = performance.now();
  const model = await llama.loadModel({ modelPath: file });
  const ctx = await model.createContext({ contextSize: Math.max(steps, prefill) + 8, threads, batchSize: 512 });
  const loadMs = performance.now() - l0;
  const seq = ctx.getSequence();
  let decode = 0;
  for (let pass = 0; pass < PASSES; pass++) {
    let n = 0;
    let start = 0;
    for await (const _ of seq.evaluate([1] as never, { temperature: 0 })) {
      if (++n === 1) start = performance.now();
      if (n >= steps - 1) break; // BOS + steps − 1 generated = steps positions, as ours
    }
    decode = Math.max(decode, ((n - 1) / (performance.now() - start)) * 1000);
    await seq.clearHistory();
  }
  await seq.evaluateWithoutGeneratingNewTokens(promptIds(Math.min(WARMUP, prefill)) as never); // the same warm-up
  let prefillTps = 0;
  for (let pass = 0; pass < PASSES; pass++) {
    await seq.clearHistory();
    const p0 = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(promptIds(prefill) as never);
    prefillTps = Math.max(prefillTps, (prefill / (performance.now() - p0)) * 1000);
  }
  const peakRssMiB = peakRssKiB() / 1024;
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
  return { threads, loadMs, decode, prefill: prefillTps, peakRssMiB };
}

/** VmRSS of this process now. */
function rssKiB(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : process.memoryUsage().rss / 1024;
}

/** VmHWM of this process (getrusage's maxRSS would include the parent's before exec). */
function peakRssKiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : process.resourceUsage().maxRSS;
}

/** Read bandwidth (bytes/s) of a SIMD kernel streaming 256 MiB on `threads` threads, best of 5. */
function readBandwidth(threads: number): number {
  const b = wasmBackend({ maxCols: 256, weightBytes: 257 * 2 ** 20, threads });
  return b.readBandwidth(256 * 2 ** 20);
}

/** Copy bandwidth (read + write bytes per second) of one thread, best of 5 over 256 MiB. */
function copyBandwidth(): number {
  const n = 64 * 1024 * 1024;
  const a = new Float32Array(n).fill(1);
  const b = new Float32Array(n);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    b.set(a);
    best = Math.min(best, performance.now() - t);
  }
  return (2 * n * 4) / (best / 1000);
}

function child<T>(args: string[]): T | string {
  try {
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
    return JSON.parse(out.trim().split('\n').at(-1)!) as T;
  } catch (e) {
    const msg = String((e as { stderr?: string }).stderr ?? e).trim().split('\n').filter(Boolean).at(-1) ?? 'failed';
    return msg.slice(0, 160);
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--ours') {
    console.log(JSON.stringify(measureOurs(args[1]!, Number(args[2]), Number(args[3]), Number(args[4]))));
    process.exit(0); // the worker threads are unref'd; exit at once anyway
  }
  if (args[0] === '--theirs') {
    console.log(JSON.stringify(await measureTheirs(args[1]!, Number(args[2]), Number(args[3]), Number(args[4]))));
    process.exit(0);
  }
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const threadCounts = (flag('--threads') ?? '1,2').split(',').map(Number);
  const stepsArg = Number(flag('--steps') ?? 64);
  const prefillArg = Number(flag('--prefill') ?? 512);
  const only = flag('--models')?.split(',');
  const with7b = args.includes('--7b');
  const withCpp = !args.includes('--no-llamacpp');
  const write = !args.includes('--no-write');

  const bw = new Map(threadCounts.map((t) => [t, readBandwidth(t)]));
  const copyBw = copyBandwidth();
  console.error(`read bandwidth: ${[...bw].map(([t, b]) => `${t} thread(s) ${(b / 1e9).toFixed(1)} GB/s`).join(', ')}; copy ${(copyBw / 1e9).toFixed(1)} GB/s`);

  const rows: string[] = [];
  const fmt = (v: number | undefined, d = 1) => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));
  const ran = new Set<string>();
  for (const f of FILES) {
    if (f.big && !with7b) continue;
    if (only && !only.includes(f.shape)) continue;
    const steps = f.big ? Math.min(f.big.steps, stepsArg) : stepsArg;
    const prefill = f.big ? Math.min(f.big.prefill, prefillArg) : prefillArg;
    for (const type of f.types) {
      ran.add(`${f.shape} | ${type}`);
      const file = ensureGguf(f.shape, type);
      const fileBytes = fs.statSync(file).size;
      const theirs: Theirs[] = [];
      if (withCpp) {
        for (const t of [1, 2]) {
          const r = child<Theirs>(['--theirs', file, String(t), String(steps), String(prefill)]);
          if (typeof r === 'string') console.error(`${f.shape} ${type} llama.cpp ${t}t: ${r}`);
          else theirs.push(r);
        }
      }
      const bestDecode = Math.max(...theirs.map((r) => r.decode));
      const bestPrefill = Math.max(...theirs.map((r) => r.prefill));
      const cppCell = (k: 'decode' | 'prefill') => (theirs.length ? theirs.map((r) => fmt(r[k])).join(' / ') : '—');
      for (const t of threadCounts) {
        const r = child<Ours>(['--ours', file, String(t), String(steps), String(prefill)]);
        const name = `${f.shape} | ${type} | ${(fileBytes / 1e6).toFixed(0)} | ${steps} / ${prefill}`;
        if (typeof r === 'string') {
          console.error(`${f.shape} ${type} llamats ${t}t: ${r}`);
          rows.push(`| ${name} | — | — | ${t} | ${r} | ${cppCell('decode')} | — | — | — | ${cppCell('prefill')} | — | — | ${theirs.map((x) => fmt(x.peakRssMiB, 0)).join(' / ') || '—'} |`);
          continue;
        }
        const bound = bw.get(t)! / r.weightBytes;
        const rssRatio = (r.peakRssMiB * 2 ** 20) / (r.fileWeightBytes + r.kvBytes);
        const rssAbove = ((r.peakRssMiB - r.baseRssMiB) * 2 ** 20) / (r.fileWeightBytes + r.kvBytes);
        console.error(`${f.shape} ${type} ${t}t: decode ${fmt(r.decode)} (llama.cpp ${cppCell('decode')}), prefill ${fmt(r.prefill)} (llama.cpp ${cppCell('prefill')})`);
        rows.push(
          `| ${name} | ${fmt(r.readMs, 0)} | ${fmt(r.loadMs, 0)} (${fmt(r.loadMs / r.readMs, 2)}) | ${t} | ${fmt(r.decode)} | ${cppCell('decode')} | ${fmt(r.decode / bestDecode, 2)} | ${fmt(bound)} (${fmt(r.decode / bound, 2)}) ` +
            `| ${fmt(r.prefill)} | ${cppCell('prefill')} | ${fmt(r.prefill / bestPrefill, 2)} | ${fmt(r.peakRssMiB, 0)} (${fmt(rssRatio, 2)}; ${fmt(rssAbove, 2)} above ${fmt(r.baseRssMiB, 0)}) | ${theirs.map((x) => fmt(x.peakRssMiB, 0)).join(' / ') || '—'} |`,
        );
      }
    }
  }

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const cmd = `node dist/bench/bench.js ${args.filter((a) => a !== '--no-write').join(' ')}`.trim();
  const load = os.loadavg()[0]!.toFixed(1);
  const head = [
    `Machine: ${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / GiB).toFixed(0)} GiB, Node ${process.version}; llama.cpp = node-llama-cpp 3.21.1 (prebuilt CPU build)`,
    `Decode: "steps" positions from BOS, greedy; prefill: a "prompt"-token prompt after a 64-token warm-up prefill (both engines); each the best of ${PASSES} passes in one process (both engines). llama.cpp columns: 1 thread / 2 threads; "× cpp" is over its better one.`,
    '',
    '| model | type | file MB | steps / prompt | read file ms | load ms (× read) | threads | decode tok/s | llama.cpp decode 1t / 2t | × cpp | bound tok/s (× bound) | prefill tok/s | llama.cpp prefill 1t / 2t | × cpp | peak RSS MiB (× weights+KV; × above the runtime alone (MiB)) | llama.cpp peak RSS 1t / 2t |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const run = `- \`${cmd}\` (\`npm run bench\` builds first), ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, load average ${load} at the end; read bandwidth (SIMD kernel, 256 MiB) ${[...bw].map(([t, b]) => `${(b / 1e9).toFixed(1)} GB/s on ${t} thread${t > 1 ? 's' : ''}`).join(', ')}; copy bandwidth (1 thread, read + write) ${(copyBw / 1e9).toFixed(1)} GB/s; llamats kernels: ${kernelVariant()}; rows of ${[...new Set([...ran].map((k) => k.split(' | ')[0]))].join(', ')}`;
  console.log([run, ...head, ...rows].join('\n'));
  if (write) {
    // rows of models this run did not measure are kept, with the commands that made them
    const doc = path.join(ROOT, 'docs/PERFORMANCE.md');
    const begin = '<!-- bench:begin -->';
    const end = '<!-- bench:end -->';
    let text = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : `# Performance\n\n${begin}\n${end}\n`;
    if (!text.includes(begin)) text += `\n${begin}\n${end}\n`;
    const old = text.slice(text.indexOf(begin) + begin.length, text.indexOf(end)).split('\n');
    const keptRows = old.filter((l) => /^\| \S/.test(l) && !l.startsWith('| model') && / \| \d+ \/ \d+ \| /.test(l) && !ran.has(l.split(' | ').slice(0, 2).join(' | ').slice(2)));
    // a run is listed while some row is still its own (a run line names its models: "rows of …")
    const shapeOf = (l: string) => l.split(' | ')[0]!.slice(2);
    const keptShapes = new Set(keptRows.map(shapeOf));
    const runs = old.filter((l) => l.startsWith('- `node dist/bench/bench.js') && (/rows of (.*)$/.exec(l)?.[1] ?? '').split(', ').some((m) => keptShapes.has(m)));
    const order = (l: string) => FILES.flatMap((f) => f.types.map((t) => `${f.shape} | ${t}`)).indexOf(l.split(' | ').slice(0, 2).join(' | ').slice(2));
    const all = [...keptRows, ...rows].sort((x, y) => order(x) - order(y));
    const table = ['Runs that made the rows below (each row is from the latest run of its model):', ...(keptRows.length ? runs : []), run, '', ...head, ...all].join('\n');
    text = text.slice(0, text.indexOf(begin) + begin.length) + '\n' + table + '\n' + text.slice(text.indexOf(end));
    fs.writeFileSync(doc, text);
    console.error(`updated ${doc}`);
  }
  process.exit(0);
}

await main();
