/**
 * `diagnose()` on machines described by fake /proc, /sys and library trees (so it runs anywhere),
 * and the real `llamats doctor` on this machine.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { kernelVariant } from '../src/backend/wasm/loader.js';
import { diagnose, type RunCommand } from '../src/doctor.js';
import { formatDoctorReport } from '../src/cli/doctor.js';
import { runCli, tempDir } from './helpers.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const CPU_ONLY = 'CPU only: llamats runs on the CPU backend (WebAssembly SIMD); GPU backends come later';
const NCCL = 'NCCL not found: needed only for several GPUs; one GPU never needs NCCL, MPI or a launcher in llamats';

/** Write `files` (relative path → content) under `root`; a content of null makes an executable. */
function tree(root: string, files: Record<string, string | null>): string {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content ?? '#!/bin/sh\nexit 1\n', { mode: content === null ? 0o755 : 0o644 });
  }
  return root;
}

function cpuinfo(model: string, coreIds: number[], flags: string): string {
  return coreIds.map((c, i) => `processor\t: ${i}\nmodel name\t: ${model}\nphysical id\t: 0\ncore id\t\t: ${c}\nflags\t\t: ${flags}\n`).join('\n') + '\n';
}
const meminfo = (totalKb: number, availKb: number) => `MemTotal:       ${totalKb} kB\nMemFree:        1024 kB\nMemAvailable:   ${availKb} kB\n`;
const noRun: RunCommand = () => assert.fail('nvidia-smi must not run where it is not installed');
const find = (advice: string[], re: RegExp) => advice.find((a) => re.test(a));

test('a CPU-only box with a cgroup v2 limit', (t) => {
  const d = tempDir(t);
  tree(d, {
    'proc/cpuinfo': cpuinfo('Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz', [0, 1, 0, 1], 'fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c'),
    'proc/meminfo': meminfo(16 * 1024 * 1024, 12 * 1024 * 1024),
    'proc/self/cgroup': '0::/user.slice/llm.scope\n',
    'sys/fs/cgroup/memory.max': 'max\n',
    'sys/fs/cgroup/user.slice/memory.max': 'max\n',
    'sys/fs/cgroup/user.slice/llm.scope/memory.max': `${8 * GiB}\n`,
    'sys/fs/cgroup/user.slice/llm.scope/memory.current': `${1 * GiB}\n`,
    'sys/bus/pci/devices/0000:00:02.0/vendor': '0x8086\n', // Intel graphics: not an NVIDIA GPU
    'sys/bus/pci/devices/0000:00:02.0/class': '0x030000\n',
    'lib/libc.so.6': '',
  });
  const r = diagnose({ procRoot: `${d}/proc`, sysRoot: `${d}/sys`, libRoots: [`${d}/lib`], pathDirs: [`${d}/bin`], icdDirs: [], run: noRun });
  assert.deepEqual({ ...r.cpu, wasmSimd: undefined, kernels: undefined }, {
    model: 'Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz', physicalCores: 2, logicalCores: 4,
    simd: ['sse4_2', 'avx', 'avx2', 'fma', 'f16c'], wasmSimd: undefined, kernels: undefined,
  });
  // this process's kernels (built by npm run build): relaxed SIMD where the engine takes it
  assert.equal(r.cpu.kernels, kernelVariant());
  assert.equal(r.cpu.wasmSimd, true); // Node 20 has WebAssembly SIMD
  assert.deepEqual(r.memory, { totalBytes: 16 * GiB, availableBytes: 7 * GiB, cgroupVersion: 2, cgroupLimitBytes: 8 * GiB, effectiveBytes: 8 * GiB });
  assert.deepEqual(r.nvidia, { pciDevices: 0, kernelModule: false, driverVersion: null, maxCudaVersion: null, nvidiaSmi: null, nvidiaSmiWorks: null, gpus: [] });
  assert.equal(r.cuda.libcuda.path, null);
  assert.equal(r.advice.length, 2, r.advice.join('\n'));
  assert.match(r.advice[0]!, /^8\.0 GiB of memory \(the cgroup limit\) is less than a 7B model in f16 needs .*q4_k.*`llamats plan <model>`/);
  assert.equal(r.advice[1], CPU_ONLY);
});

test('NVIDIA driver 550.54.14, CUDA 12.4 libraries and two GPUs seen by nvidia-smi', (t) => {
  const d = tempDir(t);
  const gpuInfo = (bus: string) => `Model: \t\t NVIDIA GeForce RTX 4070\nIRQ:   \t\t 139\nGPU UUID: \t GPU-0000\nBus Location: \t ${bus}\nDevice Minor: \t 0\n`;
  tree(d, {
    'proc/cpuinfo': cpuinfo('AMD Ryzen 7 7700X 8-Core Processor', [0, 1], 'sse4_2 avx avx2 fma f16c avx512f avx512bw avx512_vnni avx512_bf16'),
    'proc/meminfo': meminfo(64 * 1024 * 1024, 60 * 1024 * 1024),
    'proc/driver/nvidia/version': 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n',
    'proc/driver/nvidia/gpus/0000:01:00.0/information': gpuInfo('0000:01:00.0'),
    'proc/driver/nvidia/gpus/0000:02:00.0/information': gpuInfo('0000:02:00.0'),
    'sys/bus/pci/devices/0000:01:00.0/vendor': '0x10de\n',
    'sys/bus/pci/devices/0000:01:00.0/class': '0x030000\n',
    'sys/bus/pci/devices/0000:01:00.1/vendor': '0x10de\n', // the card's HDMI audio: not a GPU
    'sys/bus/pci/devices/0000:01:00.1/class': '0x040300\n',
    'sys/bus/pci/devices/0000:02:00.0/vendor': '0x10de\n',
    'sys/bus/pci/devices/0000:02:00.0/class': '0x030000\n',
    'lib/libcuda.so.1': '',
    'lib/libcuda.so.550.54.14': '',
    'lib/libvulkan.so.1': '',
    'cuda/lib64/libcudart.so': '',
    'cuda/lib64/libcudart.so.12': '',
    'cuda/lib64/libcudart.so.12.4.127': '',
    'cuda/lib64/libcublasLt.so.12': '', // not cuBLAS itself
    'cuda/lib64/libcublas.so.12': '',
    'cuda/lib64/libnvrtc-builtins.so.12.4': '', // not NVRTC itself
    'cuda/lib64/libnvrtc.so.12': '',
    'icd.d/nvidia_icd.json': '{}',
    'bin/nvidia-smi': null,
  });
  const calls: Array<[string, readonly string[]]> = [];
  const run: RunCommand = (cmd, args) => {
    calls.push([cmd, args]);
    return { status: 0, stdout: 'NVIDIA GeForce RTX 4070, 12282, 11890, 550.54.14\nNVIDIA GeForce RTX 4070, 12282, 12010, 550.54.14\n' };
  };
  const r = diagnose({ procRoot: `${d}/proc`, sysRoot: `${d}/sys`, libRoots: [`${d}/lib`, `${d}/cuda/lib64`], pathDirs: [`${d}/nobin`, `${d}/bin`], icdDirs: [`${d}/icd.d`], run });
  assert.deepEqual(calls, [[`${d}/bin/nvidia-smi`, ['--query-gpu=name,memory.total,memory.free,driver_version', '--format=csv,noheader,nounits']]]);
  assert.deepEqual(r.nvidia, {
    pciDevices: 2, kernelModule: true, driverVersion: '550.54.14', maxCudaVersion: '12.4', nvidiaSmi: `${d}/bin/nvidia-smi`, nvidiaSmiWorks: true,
    gpus: [
      { name: 'NVIDIA GeForce RTX 4070', busId: '0000:01:00.0', totalBytes: 12282 * MiB, freeBytes: 11890 * MiB },
      { name: 'NVIDIA GeForce RTX 4070', busId: '0000:02:00.0', totalBytes: 12282 * MiB, freeBytes: 12010 * MiB },
    ],
  });
  assert.deepEqual(r.cuda.libcuda, { path: `${d}/lib/libcuda.so.550.54.14`, version: '550.54.14' });
  assert.deepEqual(r.cuda.cudart, { path: `${d}/cuda/lib64/libcudart.so.12.4.127`, version: '12.4.127' });
  assert.deepEqual(r.cuda.cublas, { path: `${d}/cuda/lib64/libcublas.so.12`, version: '12' });
  assert.deepEqual(r.cuda.nvrtc, { path: `${d}/cuda/lib64/libnvrtc.so.12`, version: '12' });
  assert.deepEqual(r.cuda.nccl, { path: null, version: null });
  assert.deepEqual(r.vulkan, { loader: `${d}/lib/libvulkan.so.1`, icds: [`${d}/icd.d/nvidia_icd.json`] });
  assert.equal(r.memory.cgroupVersion, null);
  assert.equal(r.memory.effectiveBytes, 64 * GiB);

  assert.equal(r.advice.length, 2, r.advice.join('\n'));
  assert.equal(r.advice[0], `${NCCL} (this machine has 2; to split a model over them later: sudo apt install libnccl2)`);
  assert.match(r.advice[1]!, /^the largest GPU has 12\.0 GiB: a 7B model in f16 \(12\.6 GiB\) does not fit on it; q8_0 .* or q4_k .* does — see `llamats plan <model>`$/);

  const text = formatDoctorReport(r);
  assert.match(text, /✓ driver 550\.54\.14 \(CUDA ≤ 12\.4\)/);
  assert.match(text, /✓ GPU 1: NVIDIA GeForce RTX 4070 \[0000:02:00\.0\], 12\.0 GiB total, 11\.7 GiB free/);
  assert.match(text, /✓ libcuda .*libcuda\.so\.550\.54\.14 \(550\.54\.14\)/);
  assert.match(text, /✗ nccl +not found — only for several GPUs/);
  assert.match(text, /Next steps\n  • NCCL not found/);
});

test('a driver without libcuda, in a cgroup v1 container, with a CUDA runtime newer than the driver', (t) => {
  const d = tempDir(t);
  tree(d, {
    'proc/cpuinfo': cpuinfo('Intel(R) Xeon(R) Gold 6230', [0, 1, 2, 3], 'sse4_2 avx avx2 fma f16c avx512f'),
    'proc/meminfo': meminfo(32 * 1024 * 1024, 30 * 1024 * 1024),
    'proc/self/cgroup': '12:memory:/docker/abc123\n11:cpu,cpuacct:/docker/abc123\n0::/\n',
    'sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n', // v1's "no limit"
    'sys/fs/cgroup/memory/docker/abc123/memory.limit_in_bytes': `${6 * GiB}\n`,
    'sys/fs/cgroup/memory/docker/abc123/memory.usage_in_bytes': `${2 * GiB}\n`,
    'proc/driver/nvidia/version': 'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build  (dvs-builder@U16-T02-35-3)  Sat Aug 19 01:13:52 UTC 2023\n',
    'proc/driver/nvidia/gpus/0000:65:00.0/information': 'Model: \t\t NVIDIA A10\nIRQ: \t\t 88\n',
    'lib/libcudart.so.13.0.48': '',
  });
  const r = diagnose({ procRoot: `${d}/proc`, sysRoot: `${d}/sys`, libRoots: [`${d}/lib`, `${d}/missing`], pathDirs: [], icdDirs: [], run: noRun });
  assert.equal(r.cpu.physicalCores, 4);
  assert.deepEqual(r.cpu.simd, ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f']);
  assert.deepEqual(r.memory, { totalBytes: 32 * GiB, availableBytes: 4 * GiB, cgroupVersion: 1, cgroupLimitBytes: 6 * GiB, effectiveBytes: 6 * GiB });
  assert.equal(r.nvidia.driverVersion, '535.104.05');
  assert.equal(r.nvidia.maxCudaVersion, '12.2');
  assert.deepEqual(r.nvidia.gpus, [{ name: 'NVIDIA A10', busId: '0000:65:00.0', totalBytes: null, freeBytes: null }]);
  assert.equal(r.cuda.libcuda.path, null);
  assert.equal(r.cuda.cudart.version, '13.0.48');

  const a = r.advice;
  assert.equal(a.length, 6, a.join('\n'));
  assert.ok(find(a, /^6\.0 GiB of memory \(the cgroup limit\).*`llamats plan <model>`/));
  assert.ok(find(a, /^NVIDIA driver 535\.104\.05 is loaded but libcuda\.so\.1 .* is in none of the 2 library folders searched: .*sudo apt install libnvidia-compute-535; in a container: run it with --gpus all/));
  assert.ok(find(a, /^CUDA libraries not found \(libcublas\.so, libnvrtc\.so\): llamats does not need them yet .*sudo apt install cuda-libraries-12-2 /));
  assert.ok(find(a, /^the CUDA runtime .*libcudart\.so\.13\.0\.48 \(CUDA 13\) is newer than driver 535\.104\.05 supports \(CUDA 12\.2\): update the driver to 580\.65\.06 or newer/));
  assert.ok(a.includes(NCCL)); // one GPU: nothing to install
  assert.ok(find(a, /^Vulkan loader libvulkan\.so\.1 not found/));
  assert.ok(!a.includes(CPU_ONLY));
});

test('an NVIDIA GPU on the PCI bus with no driver, and nothing readable elsewhere', (t) => {
  const d = tempDir(t);
  tree(d, { 'sys/bus/pci/devices/0000:01:00.0/vendor': '0x10de\n', 'sys/bus/pci/devices/0000:01:00.0/class': '0x030000\n' });
  const r = diagnose({ procRoot: `${d}/no-proc`, sysRoot: `${d}/sys`, libRoots: [], pathDirs: [], icdDirs: [], run: noRun });
  assert.deepEqual({ ...r.cpu, wasmSimd: true, kernels: null }, { model: null, physicalCores: null, logicalCores: null, simd: [], wasmSimd: true, kernels: null });
  assert.deepEqual(r.memory, { totalBytes: null, availableBytes: null, cgroupVersion: null, cgroupLimitBytes: null, effectiveBytes: null });
  assert.equal(r.nvidia.pciDevices, 1);
  assert.match(r.advice[0]!, /^an NVIDIA GPU is on the PCI bus but the NVIDIA kernel driver is not loaded .*sudo ubuntu-drivers install/);
  assert.match(formatDoctorReport(r), /✗ unknown model, \? cores, \? threads/);
});

test('the real `llamats doctor` on this machine', () => {
  const r = runCli(['doctor', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { cpu: { logicalCores: number | null }; memory: { totalBytes: number | null }; advice: string[] };
  const meminfo = fs.existsSync('/proc/meminfo') ? fs.readFileSync('/proc/meminfo', 'utf8') : '';
  const memTotalKb = /^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1];
  if (fs.existsSync('/proc/cpuinfo')) assert.equal(report.cpu.logicalCores, os.cpus().length);
  assert.equal(report.memory.totalBytes, memTotalKb ? Number(memTotalKb) * 1024 : null);

  const text = runCli(['doctor']);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /^llamats doctor — .*\n\nCPU\n  [✓✗] /);
  assert.match(text.stdout, /\nNext steps\n  • /);
  assert.equal(runCli(['doctor', 'extra']).status, 2);
});
