/**
 * `npm run bench`: decode speed of each backend (ref: plain TypeScript; wasm: WebAssembly SIMD),
 * side by side on the same checkpoints in the same command.
 *
 * For stories260K (../shared) and random-weight checkpoints with the stories15M and stories110M
 * shapes (made by gen-models.ts), each backend in a fresh child process: file read time, load time,
 * greedy decode tok/s over a run like `llamats run -t 0 -n N`, peak RSS, and two ratios from the
 * same run: the effective weight bandwidth against the machine's measured copy bandwidth, and —
 * when llama2.c's `run` binary is given (`--runc PATH` or LLAMA2C_RUN) — tok/s against run.c on the
 * same file in the same command — and each backend's tok/s against ref's on the same model.
 *
 * Usage: node dist/bench/bench.js [--runc PATH] [--steps N] [--backends ref,wasm] [--no-write]
 * Writes docs/PERFORMANCE.md unless --no-write.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { argmax, loadModel, parameterCount, Session, writeLlama2cCheckpoint } from '../src/index.js';
import type { BackendName } from '../src/backend/backend.js';
import { matrixBytes } from '../src/model/tensor.js';
import { readFileBytes } from '../src/io/file.js';
import { ensureModel, MODELS_DIR } from './gen-models.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const SHARED = process.env.LLAMATS_SHARED ?? path.resolve(ROOT, '../shared');

interface One {
  name: string;
  backend: string;
  /** ms to upload the weights into the backend (first session of the model). */
  uploadMs: number;
  file: string;
  params: number;
  weightBytes: number;
  readMs: number;
  loadMs: number;
  steps: number;
  tokPerSec: number;
  maxRssMiB: number;
}

/** Child: measure one checkpoint and print one JSON line. */
function measureOne(name: string, file: string, steps: number, backend: BackendName): One {
  const l0 = performance.now();
  const model = loadModel(file);
  const loadMs = performance.now() - l0;
  const w = model.weights;
  const weightBytes =
    w.layers.reduce((a, l) => a + [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3].reduce((b, m) => b + matrixBytes(m), 0), 0) +
    matrixBytes(w.classifier);
  const n = Math.min(steps, model.config.seqLen);
  const u0 = performance.now();
  const session = new Session(model, { maxSeqLen: n, backend });
  const uploadMs = performance.now() - u0;
  if (session.backend !== backend) throw new Error(`${backend} did not start: ${session.fallbackReason}`);
  // like run.c -t 0: BOS, then greedy; the clock starts after the first step
  let token = 1;
  let start = 0;
  for (let pos = 0; pos < n; pos++) {
    token = argmax(session.forward(token, pos));
    if (pos === 0) start = performance.now();
  }
  const tokPerSec = ((n - 1) / (performance.now() - start)) * 1000;
  const maxRssMiB = peakRssKiB() / 1024; // before the extra read below
  const r0 = performance.now();
  readFileBytes(file);
  const readMs = performance.now() - r0;
  return {
    name, backend, uploadMs, file, params: parameterCount(model.config), weightBytes, readMs, loadMs, steps: n, tokPerSec,
    maxRssMiB,
  };
}

/** VmHWM of this process (getrusage's maxRSS would include the parent's before exec). */
function peakRssKiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : process.resourceUsage().maxRSS;
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

function runC(bin: string, file: string, tokenizer: string, steps: number): number | null {
  const r = spawnSync(bin, [file, '-z', tokenizer, '-t', '0', '-n', String(steps)], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const m = /achieved tok\/s: ([\d.]+)/.exec(r.stderr ?? '');
  return m ? Number(m[1]) : null;
}

function main(): void {
  const args = process.argv.slice(2);
  if (args[0] === '--one') {
    console.log(JSON.stringify(measureOne(args[1]!, args[2]!, Number(args[3]), args[4] as BackendName)));
    return;
  }
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const runc = flag('--runc') ?? process.env.LLAMA2C_RUN;
  const steps = Number(flag('--steps') ?? 256);
  const write = !args.includes('--no-write');
  const backends = (flag('--backends') ?? 'ref,wasm').split(',') as BackendName[];

  const models: Array<{ name: string; file: string; tokenizer?: string }> = [];
  const s260 = path.join(SHARED, 'models/stories260K.bin');
  if (fs.existsSync(s260)) models.push({ name: 'stories260K', file: s260, tokenizer: path.join(SHARED, 'models/tok512.bin') });
  else console.error(`skipping stories260K: ${s260} is missing`);
  const bigTok = path.join(SHARED, 'models/tokenizer.bin');
  for (const name of ['stories15M', 'stories110M']) {
    models.push({ name: `${name} (random)`, file: ensureModel(name), ...(fs.existsSync(bigTok) ? { tokenizer: bigTok } : {}) });
  }
  // int8 weights (llama2.c version 2, group size 64, what runq.c runs) exercise the integer kernels
  const q8 = path.join(MODELS_DIR, 'stories15M-random-q8.bin');
  if (!fs.existsSync(q8)) writeLlama2cCheckpoint(q8, loadModel(ensureModel('stories15M')), { version: 2 });
  models.push({ name: 'stories15M (random, q8)', file: q8 });

  const bw = copyBandwidth();
  const rows: Array<One & { runcTokPerSec: number | null; refTokPerSec: number | null }> = [];
  for (const m of models) {
    const runcTokPerSec = runc && m.tokenizer ? runC(runc, m.file, m.tokenizer, steps) : null;
    let refTokPerSec: number | null = null;
    for (const backend of backends) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', m.name, m.file, String(steps), backend], { encoding: 'utf8' });
      const one = JSON.parse(out.trim().split('\n').at(-1)!) as One;
      if (backend === 'ref') refTokPerSec = one.tokPerSec;
      rows.push({ ...one, runcTokPerSec, refTokPerSec });
      console.error(`${m.name} [${backend}]: ${one.tokPerSec.toFixed(1)} tok/s` + (runcTokPerSec ? ` (run.c ${runcTokPerSec.toFixed(1)})` : ''));
    }
  }

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const cmd = `node dist/bench/bench.js${runc ? ' --runc ' + runc : ''}${flag('--steps') ? ' --steps ' + steps : ''}${flag('--backends') ? ' --backends ' + backends.join(',') : ''}`;
  const lines = [
    `Command: \`${cmd}\` (\`npm run bench\` builds first), ${new Date().toISOString().slice(0, 10)}`,
    `Machine: ${cpu}, ${os.cpus().length} cores, Node ${process.version}; backends: ref = plain TypeScript, wasm = WebAssembly SIMD; 1 thread each`,
    `Measured copy bandwidth (1 thread, read + write): ${(bw / 1e9).toFixed(1)} GB/s`,
    '',
    '| model | params | weight MB | read file ms | load ms (read + parse) | backend | upload ms | steps | decode tok/s | × ref | weight GB/s (× copy bw) | run.c -O3 tok/s | llamats / run.c | peak RSS MiB |',
    '|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => {
      const gbs = (r.weightBytes * r.tokPerSec) / 1e9;
      return `| ${r.name} | ${(r.params / 1e6).toFixed(2)}M | ${(r.weightBytes / 1e6).toFixed(1)} | ${r.readMs.toFixed(1)} | ${r.loadMs.toFixed(1)} | ${r.backend} | ${r.uploadMs.toFixed(1)} | ${r.steps} | ${r.tokPerSec.toFixed(1)} | ${r.refTokPerSec ? (r.tokPerSec / r.refTokPerSec).toFixed(2) : '—'} | ${gbs.toFixed(2)} (${((gbs * 1e9) / bw).toFixed(3)}) | ${r.runcTokPerSec?.toFixed(1) ?? '—'} | ${r.runcTokPerSec ? (r.tokPerSec / r.runcTokPerSec).toFixed(2) : '—'} | ${r.maxRssMiB.toFixed(0)} |`;
    }),
  ];
  const table = lines.join('\n');
  console.log(table);
  if (write) {
    const doc = path.join(ROOT, 'docs/PERFORMANCE.md');
    const begin = '<!-- bench:begin -->';
    const end = '<!-- bench:end -->';
    let text = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : `# Performance\n\n${begin}\n${end}\n`;
    if (!text.includes(begin)) text += `\n${begin}\n${end}\n`;
    text = text.slice(0, text.indexOf(begin) + begin.length) + '\n' + table + '\n' + text.slice(text.indexOf(end));
    fs.writeFileSync(doc, text);
    console.error(`updated ${doc}`);
  }
}

main();
