/**
 * `diagnose()`: what this machine offers a LLaMA engine, and the next step for each missing piece.
 *
 * Everything is read from files and, when present, `nvidia-smi` — no native code, no FFI:
 *   cpu     /proc/cpuinfo (model, cores, SIMD flags) + a tiny v128 module for WebAssembly SIMD
 *   memory  /proc/meminfo, the cgroup limit (v2 memory.max or v1 memory.limit_in_bytes, min over
 *           the ancestors of /proc/self/cgroup's path)
 *   nvidia  /sys/bus/pci (an NVIDIA display device at all?), /proc/driver/nvidia/version and
 *           gpus/<bus>/information, `nvidia-smi --query-gpu=…` (names, total/free memory)
 *   cuda    libcuda, cudart, cuBLAS, NVRTC, NCCL found by file name in the library roots; the
 *           version is the file name's suffix (libcuda.so.550.54.14, libcudart.so.12.4.127)
 *   vulkan  libvulkan.so.1 and the ICD files (*.json) in the Vulkan ICD folders
 * Every read tolerates a missing file: what cannot be read is `null` ("unknown"), never an error.
 * The roots and the command runner can be replaced, so tests describe a machine with fake trees.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatBytes } from './errors.js';
import { kernelVariant } from './backend/wasm/loader.js';

export type RunCommand = (cmd: string, args: readonly string[]) => { stdout: string; status: number | null } | null;

export interface DoctorEnv {
  procRoot?: string; // default /proc
  sysRoot?: string; // default /sys
  libRoots?: string[]; // folders searched for shared libraries; default defaultLibRoots()
  pathDirs?: string[]; // folders searched for nvidia-smi; default $PATH
  icdDirs?: string[]; // Vulkan ICD folders; default /usr/share/vulkan/icd.d, /etc/vulkan/icd.d
  run?: RunCommand; // runs nvidia-smi; default spawnSync with a 5 s timeout
}

/** A library found by file name: the path of its most specific version, or null. */
export interface LibraryInfo {
  path: string | null;
  version: string | null; // the file name's suffix; for libcuda the driver version
}

export interface GpuInfo {
  name: string;
  busId: string | null;
  totalBytes: number | null;
  freeBytes: number | null;
}

export interface DoctorReport {
  platform: string; // 'linux x64, Node v20.…'
  cpu: {
    model: string | null;
    physicalCores: number | null;
    logicalCores: number | null;
    simd: string[]; // the flags that matter to matmul kernels, in a fixed order
    wasmSimd: boolean; // this Node validates a v128 module
    kernels: 'relaxed-simd' | 'simd' | null; // the wasm kernels llamats runs here (backend/wasm/loader.ts); null: none
  };
  memory: {
    totalBytes: number | null; // MemTotal
    availableBytes: number | null; // MemAvailable, less what the cgroup has left if smaller
    cgroupVersion: 1 | 2 | null;
    cgroupLimitBytes: number | null; // null: no limit (or no cgroup)
    effectiveBytes: number | null; // min(total, cgroup limit)
  };
  nvidia: {
    pciDevices: number; // NVIDIA display controllers on the PCI bus, driver or not
    kernelModule: boolean; // /proc/driver/nvidia/version exists
    driverVersion: string | null;
    maxCudaVersion: string | null; // the newest CUDA this driver supports (NVIDIA's table)
    nvidiaSmi: string | null; // its path when found on the PATH
    nvidiaSmiWorks: boolean | null; // null when not found
    gpus: GpuInfo[];
  };
  cuda: { libcuda: LibraryInfo; cudart: LibraryInfo; cublas: LibraryInfo; nvrtc: LibraryInfo; nccl: LibraryInfo; searched: string[] };
  vulkan: { loader: string | null; icds: string[] };
  advice: string[];
}

/** What a 7B model (6.74B parameters) needs for its weights alone, per type: the yardstick of the advice. */
const TYPICAL_F16 = 6.74e9 * 2;
const TYPICAL_Q8 = 6.74e9 * (34 / 32);
const TYPICAL_Q4K = 6.74e9 * (144 / 256);

export function diagnose(env: DoctorEnv = {}): DoctorReport {
  const proc = env.procRoot ?? '/proc';
  const sys = env.sysRoot ?? '/sys';
  const libRoots = env.libRoots ?? defaultLibRoots();
  const cpu = readCpu(proc);
  const memory = readMemory(proc, sys);
  const cuda = {
    libcuda: findLibrary(libRoots, 'libcuda'),
    cudart: findLibrary(libRoots, 'libcudart'),
    cublas: findLibrary(libRoots, 'libcublas'),
    nvrtc: findLibrary(libRoots, 'libnvrtc'),
    nccl: findLibrary(libRoots, 'libnccl'),
    searched: libRoots,
  };
  const nvidia = readNvidia(proc, sys, env.pathDirs ?? defaultPathDirs(), env.run ?? runWithTimeout, cuda.libcuda);
  const vulkan = {
    loader: findLibrary(libRoots, 'libvulkan').path,
    icds: (env.icdDirs ?? ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d']).flatMap((d) => list(d).filter((f) => f.endsWith('.json')).map((f) => path.join(d, f))),
  };
  const report: DoctorReport = { platform: `${os.platform()} ${os.arch()}, Node ${process.version}`, cpu, memory, nvidia, cuda, vulkan, advice: [] };
  report.advice = advise(report);
  return report;
}

// ── CPU ─────────────────────────────────────────────────────────────────────────────────────

/** /proc/cpuinfo flag → the name shown (ARM's Features use other words for the same things). */
const SIMD_FLAGS: ReadonlyArray<[string, string]> = [
  ['sse4_2', 'sse4_2'], ['avx', 'avx'], ['avx2', 'avx2'], ['fma', 'fma'], ['f16c', 'f16c'],
  ['avx512f', 'avx512f'], ['avx512bw', 'avx512bw'], ['avx512_vnni', 'avx512_vnni'], ['avx512_bf16', 'avx512_bf16'], ['avx_vnni', 'avx_vnni'],
  ['asimd', 'neon'], ['asimdhp', 'fp16'], ['asimddp', 'dotprod'], ['i8mm', 'i8mm'], ['sve', 'sve'], ['sve2', 'sve2'],
];

function readCpu(proc: string): DoctorReport['cpu'] {
  const blocks = (read(path.join(proc, 'cpuinfo')) ?? '').split(/\n\s*\n/).map(keyValues);
  const cpus = blocks.filter((b) => b.has('processor'));
  const first = cpus[0] ?? new Map<string, string>();
  const flags = new Set((first.get('flags') ?? first.get('Features') ?? '').split(/\s+/));
  const cores = new Set(cpus.filter((b) => b.has('core id')).map((b) => `${b.get('physical id')}:${b.get('core id')}`));
  return {
    model: first.get('model name') ?? blocks.find((b) => b.has('Hardware'))?.get('Hardware') ?? blocks.find((b) => b.has('Model'))?.get('Model') ?? null,
    physicalCores: cores.size > 0 ? cores.size : null,
    logicalCores: cpus.length > 0 ? cpus.length : null,
    simd: SIMD_FLAGS.filter(([flag]) => flags.has(flag)).map(([, name]) => name),
    wasmSimd: wasmSimdSupported(),
    kernels: kernelsHere(),
  };
}

/** Which wasm kernels module this process runs (compiling it), or null when none can run. */
function kernelsHere(): 'relaxed-simd' | 'simd' | null {
  try {
    return kernelVariant();
  } catch {
    return null;
  }
}

/** A module with one function returning `v128.const 0`: valid only where WebAssembly SIMD is. */
export function wasmSimdSupported(): boolean {
  const v128 = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x0a, 0x16, 0x01, 0x14, 0x00, 0xfd, 0x0c, ...new Array<number>(16).fill(0), 0x0b]; // code: v128.const 0; end
  // typed locally: the project's lib settings have no WebAssembly types (as in backend/wasm/loader.ts)
  const wasm = (globalThis as unknown as { WebAssembly?: { validate(bytes: Uint8Array): boolean } }).WebAssembly;
  try {
    return wasm?.validate(new Uint8Array(v128)) ?? false;
  } catch {
    return false;
  }
}

// ── memory ──────────────────────────────────────────────────────────────────────────────────

export function readMemory(proc: string, sys: string): DoctorReport['memory'] {
  const info = keyValues(read(path.join(proc, 'meminfo')) ?? '');
  const kb = (k: string) => (info.has(k) ? parseInt(info.get(k)!, 10) * 1024 : null);
  const totalBytes = kb('MemTotal');
  const cg = readCgroup(proc, sys);
  const left = cg.limit !== null && cg.usage !== null ? Math.max(0, cg.limit - cg.usage) : null;
  const avail = kb('MemAvailable');
  return {
    totalBytes,
    availableBytes: avail !== null && left !== null ? Math.min(avail, left) : (avail ?? left),
    cgroupVersion: cg.version,
    cgroupLimitBytes: cg.limit,
    effectiveBytes: totalBytes !== null && cg.limit !== null ? Math.min(totalBytes, cg.limit) : (totalBytes ?? cg.limit),
  };
}

/**
 * The memory limit of this process's cgroup: the smallest limit on its path from the root (a
 * parent's limit binds the children). Inside a container the path may not exist below the mount
 * point; the files that do exist are what count.
 */
function readCgroup(proc: string, sys: string): { version: 1 | 2 | null; limit: number | null; usage: number | null } {
  const lines = (read(path.join(proc, 'self/cgroup')) ?? '').split('\n').map((l) => l.split(':'));
  const v1Path = lines.find((l) => l.length >= 3 && l[1]!.split(',').includes('memory'))?.slice(2).join(':');
  const v1Root = path.join(sys, 'fs/cgroup/memory');
  const [version, root, cgPath, limitFile, usageFile] = fs.existsSync(v1Root)
    ? ([1, v1Root, v1Path ?? '/', 'memory.limit_in_bytes', 'memory.usage_in_bytes'] as const)
    : ([2, path.join(sys, 'fs/cgroup'), lines.find((l) => l[0] === '0' && l[1] === '')?.slice(2).join(':') ?? '/', 'memory.max', 'memory.current'] as const);
  const parts = cgPath.split('/').filter(Boolean);
  let limit: number | null = null;
  let usage: number | null = null;
  let found = false;
  for (let i = 0; i <= parts.length; i++) {
    const dir = path.join(root, ...parts.slice(0, i));
    const l = read(path.join(dir, limitFile))?.trim();
    const u = read(path.join(dir, usageFile))?.trim();
    if (l !== undefined) found = true;
    const n = l === undefined || l === 'max' ? NaN : Number(l);
    if (Number.isFinite(n) && n < 2 ** 62 && (limit === null || n < limit)) limit = n; // v1 writes "no limit" as ~2^63
    if (u !== undefined && Number.isFinite(Number(u))) usage = Number(u); // the deepest one is ours
  }
  return { version: found ? version : null, limit, usage };
}

// ── NVIDIA driver and GPUs ──────────────────────────────────────────────────────────────────

const NVIDIA_SMI_ARGS = ['--query-gpu=name,memory.total,memory.free,driver_version', '--format=csv,noheader,nounits'];

function readNvidia(proc: string, sys: string, pathDirs: string[], run: RunCommand, libcuda: LibraryInfo): DoctorReport['nvidia'] {
  const pciRoot = path.join(sys, 'bus/pci/devices');
  const pciDevices = list(pciRoot).filter((d) => read(path.join(pciRoot, d, 'vendor'))?.trim() === '0x10de' && /^0x030[02]/.test(read(path.join(pciRoot, d, 'class'))?.trim() ?? '')).length;
  const versionFile = read(path.join(proc, 'driver/nvidia/version'));
  // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 …" (or "Open Kernel Module for x86_64")
  let driverVersion = versionFile?.match(/Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)/)?.[1] ?? null;

  const gpusDir = path.join(proc, 'driver/nvidia/gpus');
  let gpus: GpuInfo[] = list(gpusDir).sort().map((bus) => ({
    name: keyValues(read(path.join(gpusDir, bus, 'information')) ?? '').get('Model') ?? 'unknown NVIDIA GPU',
    busId: bus,
    totalBytes: null,
    freeBytes: null,
  }));

  const nvidiaSmi = pathDirs.map((d) => path.join(d, 'nvidia-smi')).find(isExecutable) ?? null;
  let nvidiaSmiWorks: boolean | null = null;
  if (nvidiaSmi) {
    const r = run(nvidiaSmi, NVIDIA_SMI_ARGS);
    nvidiaSmiWorks = r !== null && r.status === 0;
    if (r && nvidiaSmiWorks) {
      // "NVIDIA GeForce RTX 4070, 12282, 11890, 550.54.14" — memory in MiB
      const rows = r.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => l.split(',').map((s) => s.trim()));
      const mib = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) * 2 ** 20 : null);
      gpus = rows.map((c, i) => ({ name: c.slice(0, -3).join(','), busId: gpus[i]?.busId ?? null, totalBytes: mib(c.at(-3)), freeBytes: mib(c.at(-2)) }));
      driverVersion ??= rows[0]?.at(-1) ?? null;
    }
  }
  if (driverVersion === null && libcuda.version?.includes('.')) driverVersion = libcuda.version;
  return {
    pciDevices,
    kernelModule: versionFile !== undefined,
    driverVersion,
    maxCudaVersion: driverVersion ? maxCudaForDriver(driverVersion) : null,
    nvidiaSmi,
    nvidiaSmiWorks,
    gpus,
  };
}

/** NVIDIA's "CUDA Toolkit and Corresponding Driver Versions" (Linux, GA releases): [CUDA, minimum driver]. */
const CUDA_DRIVERS: ReadonlyArray<[string, string]> = [
  ['13.0', '580.65.06'], ['12.9', '575.51.03'], ['12.8', '570.26'], ['12.6', '560.28.03'], ['12.5', '555.42.02'],
  ['12.4', '550.54.14'], ['12.3', '545.23.06'], ['12.2', '535.54.03'], ['12.1', '530.30.02'], ['12.0', '525.60.13'],
  ['11.8', '520.61.05'], ['11.7', '515.43.04'], ['11.6', '510.39.01'], ['11.5', '495.29.05'], ['11.4', '470.42.01'],
  ['11.3', '465.19.01'], ['11.2', '460.27.03'], ['11.1', '455.23'], ['11.0', '450.36.06'],
];

/** The newest CUDA version a driver runs, or null when it predates CUDA 11. */
export function maxCudaForDriver(driver: string): string | null {
  return CUDA_DRIVERS.find(([, min]) => compareVersions(driver, min) >= 0)?.[0] ?? null;
}

function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

// ── libraries ───────────────────────────────────────────────────────────────────────────────

/**
 * `<name>.so` or `<name>.so.<version>` in the first root that has one, preferring the most specific
 * version (libcuda.so.550.54.14 over libcuda.so.1 over libcuda.so).
 */
export function findLibrary(roots: readonly string[], name: string): LibraryInfo {
  const re = new RegExp(`^${name.replace(/[.+]/g, '\\$&')}\\.so(?:\\.(\\d+(?:\\.\\d+)*))?$`);
  for (const root of roots) {
    const hits = list(root).flatMap((f) => {
      const m = re.exec(f);
      return m ? [{ path: path.join(root, f), version: m[1] ?? null }] : [];
    });
    if (hits.length > 0) return hits.sort((a, b) => (b.version?.split('.').length ?? 0) - (a.version?.split('.').length ?? 0))[0]!;
  }
  return { path: null, version: null };
}

/** LD_LIBRARY_PATH, ld.so.conf.d, the usual system folders, the CUDA toolkit and WSL's driver folder. */
export function defaultLibRoots(): string[] {
  const triple = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  const confDir = '/etc/ld.so.conf.d';
  const conf = list(confDir).filter((f) => f.endsWith('.conf')).flatMap((f) =>
    (read(path.join(confDir, f)) ?? '').split('\n').map((l) => l.trim()).filter((l) => l.startsWith('/')));
  const cuda = ['/usr/local', '/opt'].flatMap((d) => list(d).filter((f) => f.startsWith('cuda')).flatMap((f) =>
    ['lib64', 'lib', `targets/${process.arch === 'arm64' ? 'sbsa' : 'x86_64'}-linux/lib`].map((l) => path.join(d, f, l))));
  return [...new Set([
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    ...conf,
    `/usr/lib/${triple}`, `/lib/${triple}`, '/usr/lib64', '/lib64', '/usr/lib', '/usr/local/lib',
    '/usr/lib/wsl/lib',
    ...cuda,
  ])];
}

function defaultPathDirs(): string[] {
  return [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/lib/wsl/lib'];
}

function runWithTimeout(cmd: string, args: readonly string[]): { stdout: string; status: number | null } | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  return r.error ? null : { stdout: r.stdout, status: r.status };
}

// ── advice ──────────────────────────────────────────────────────────────────────────────────

function advise(r: DoctorReport): string[] {
  const out: string[] = [];
  const { memory: mem, nvidia: nv, cuda } = r;
  if (!r.cpu.wasmSimd) out.push('this Node has no WebAssembly SIMD: update to Node 20 or newer (on x86, SIMD needs SSE4.1); until then llamats runs the slower reference backend');
  if (mem.effectiveBytes !== null && mem.effectiveBytes < TYPICAL_F16) {
    out.push(`${formatBytes(mem.effectiveBytes)} of memory${mem.cgroupLimitBytes !== null && mem.cgroupLimitBytes === mem.effectiveBytes ? ' (the cgroup limit)' : ''} is less than a 7B model in f16 needs (${formatBytes(TYPICAL_F16)}): `
      + `use a quantized one (llamats quantize in.gguf out.gguf q4_k → ${formatBytes(TYPICAL_Q4K)}) and check a model with \`llamats plan <model>\` before loading it`);
  }

  const hasGpu = nv.pciDevices > 0 || nv.kernelModule || nv.gpus.length > 0;
  if (!hasGpu) {
    out.push('CPU only: llamats runs on the CPU backend (WebAssembly SIMD); GPU backends come later');
    return out;
  }
  const nGpus = Math.max(nv.gpus.length, nv.pciDevices);
  const major = nv.driverVersion?.split('.')[0];
  if (!nv.kernelModule) {
    out.push('an NVIDIA GPU is on the PCI bus but the NVIDIA kernel driver is not loaded (no /proc/driver/nvidia/version): '
      + 'install the driver (Ubuntu: sudo ubuntu-drivers install) and reboot; if it is installed, run sudo modprobe nvidia and check Secure Boot (mokutil --sb-state)');
  } else if (nv.nvidiaSmiWorks === false) {
    out.push(`${nv.nvidiaSmi} fails: it must match the loaded driver ${nv.driverVersion ?? ''} — reboot after a driver update, or reinstall its utilities (Ubuntu/Debian: sudo apt install nvidia-utils-${major ?? '<driver major>'})`);
  }
  if (nv.kernelModule && !cuda.libcuda.path) {
    out.push(`NVIDIA driver ${nv.driverVersion ?? ''} is loaded but libcuda.so.1 (its CUDA library) is in none of the ${cuda.searched.length} library folders searched: `
      + `install the user-space part of the same driver (Ubuntu/Debian: sudo apt install libnvidia-compute-${major ?? '<driver major>'}; in a container: run it with --gpus all and the NVIDIA Container Toolkit), or add its folder to LD_LIBRARY_PATH`);
  }
  const missing = (['cudart', 'cublas', 'nvrtc'] as const).filter((k) => !cuda[k].path);
  if (missing.length > 0) {
    out.push(`CUDA libraries not found (${missing.map((k) => `lib${k}.so`).join(', ')}): llamats does not need them yet (GPU backends come later); `
      + `to have them ready: sudo apt install cuda-libraries-${nv.maxCudaVersion?.replace('.', '-') ?? '<the CUDA version the driver supports>'} from NVIDIA's CUDA repository, then add /usr/local/cuda/lib64 to LD_LIBRARY_PATH or run sudo ldconfig`);
  }
  const rtMajor = Number(cuda.cudart.version?.split('.')[0]);
  if (nv.maxCudaVersion && rtMajor > Number(nv.maxCudaVersion.split('.')[0])) {
    const need = CUDA_DRIVERS.filter(([c]) => c.startsWith(`${rtMajor}.`)).at(-1)?.[1];
    out.push(`the CUDA runtime ${cuda.cudart.path} (CUDA ${rtMajor}) is newer than driver ${nv.driverVersion} supports (CUDA ${nv.maxCudaVersion}): `
      + `update the driver${need ? ` to ${need} or newer` : ''}, or use CUDA ${nv.maxCudaVersion.split('.')[0]} libraries`);
  }
  if (!cuda.nccl.path) {
    out.push('NCCL not found: needed only for several GPUs; one GPU never needs NCCL, MPI or a launcher in llamats'
      + (nGpus > 1 ? ` (this machine has ${nGpus}; to split a model over them later: sudo apt install libnccl2)` : ''));
  }
  const largest = Math.max(...nv.gpus.map((g) => g.totalBytes ?? Infinity));
  if (Number.isFinite(largest) && largest < TYPICAL_F16) {
    out.push(`the largest GPU has ${formatBytes(largest)}: a 7B model in f16 (${formatBytes(TYPICAL_F16)}) does not fit on it; `
      + `q8_0 (${formatBytes(TYPICAL_Q8)}) or q4_k (${formatBytes(TYPICAL_Q4K)}) does — see \`llamats plan <model>\``);
  }
  if (!r.vulkan.loader) out.push('Vulkan loader libvulkan.so.1 not found (llamats does not use Vulkan yet): sudo apt install libvulkan1');
  else if (r.vulkan.icds.length === 0) out.push('no Vulkan driver (ICD file): the NVIDIA driver installs nvidia_icd.json; reinstall it, or for other GPUs sudo apt install mesa-vulkan-drivers');
  return out;
}

// ── tolerant reads ──────────────────────────────────────────────────────────────────────────

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function list(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** "key : value" lines (cpuinfo, meminfo, nvidia's information files) → a map; the first of a key wins. */
function keyValues(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !m.has(line.slice(0, i).trim())) m.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return m;
}
