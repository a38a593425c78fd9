/**
 * `llamats doctor`: what this machine offers (CPU, memory, NVIDIA driver and GPUs, CUDA libraries,
 * Vulkan), one ✓/✗ line each, then the next step for every missing piece. See src/doctor.ts.
 */
import { diagnose, type DoctorReport, type LibraryInfo } from '../doctor.js';
import { formatBytes, InvalidArgumentError } from '../errors.js';
import { formatFlags, parseArgs, type FlagSpec } from './args.js';
import type { RunIO } from './run.js';

export const DOCTOR_FLAGS: FlagSpec[] = [
  { long: '--json', key: 'json', kind: 'bool', help: 'print the report as JSON' },
  { long: '--verbose', key: 'verbose', kind: 'bool', help: 'on errors, print the chain of causes' },
  { short: '-h', long: '--help', key: 'help', kind: 'bool', help: 'show this help' },
];
export const DOCTOR_USAGE = `Usage: llamats doctor [options]
What this machine offers a LLaMA model — CPU and SIMD, memory and its cgroup limit, the NVIDIA
driver, GPUs and their memory, CUDA libraries (libcuda, cudart, cuBLAS, NVRTC, NCCL), Vulkan —
and the exact next step for each missing piece. Reads files and nvidia-smi; changes nothing.
Options:
${formatFlags(DOCTOR_FLAGS)}`;

export async function doctorCommand(argv: readonly string[], io: RunIO): Promise<number> {
  const { positionals, flags } = parseArgs(argv, DOCTOR_FLAGS, 'doctor');
  if (flags.help) return io.stdout(DOCTOR_USAGE + '\n'), 0;
  if (positionals.length > 0) throw new InvalidArgumentError(`doctor takes no arguments, got '${positionals[0]}'; usage: llamats doctor [--json]`);
  const report = diagnose();
  io.stdout(flags.json ? JSON.stringify(report, null, 2) + '\n' : formatDoctorReport(report));
  return 0;
}

const bytes = (n: number | null) => (n === null ? 'unknown' : formatBytes(n));

export function formatDoctorReport(r: DoctorReport): string {
  const { cpu, memory: mem, nvidia: nv, cuda, vulkan } = r;
  const lib = (name: string, l: LibraryInfo, what: string): [boolean, string] =>
    [l.path !== null, `${name.padEnd(8)}${l.path ? `${l.path}${l.version ? ` (${l.version})` : ''}` : 'not found'} — ${what}`];
  const sections: Array<[string, Array<[boolean, string]>]> = [
    ['CPU', [
      [cpu.model !== null, `${cpu.model ?? 'unknown model'}, ${cpu.physicalCores ?? '?'} cores, ${cpu.logicalCores ?? '?'} threads`],
      [cpu.simd.length > 0, `SIMD: ${cpu.simd.join(' ') || 'none known'}`],
      [cpu.wasmSimd, `WebAssembly SIMD in this Node: ${cpu.wasmSimd ? 'yes' : 'no'}`],
      [cpu.kernels !== null, cpu.kernels === 'relaxed-simd'
        ? 'kernels: relaxed SIMD (Q4_0 / Q4_K prompts with int8 activations; LLAMATS_RELAXED_SIMD=0 turns it off)'
        : cpu.kernels === 'simd' ? 'kernels: fixed-width SIMD (LLAMATS_RELAXED_SIMD=0, or this engine has no relaxed SIMD)' : 'kernels: none (run `npm run build`)'],
    ]],
    ['Memory', [
      [mem.totalBytes !== null, `${bytes(mem.totalBytes)} total, ${bytes(mem.availableBytes)} available`],
      [true, mem.cgroupLimitBytes !== null ? `cgroup v${mem.cgroupVersion} limit ${bytes(mem.cgroupLimitBytes)}: ${bytes(mem.effectiveBytes)} usable` : 'no cgroup memory limit'],
    ]],
    ['NVIDIA', [
      [nv.kernelModule, nv.kernelModule ? `driver ${nv.driverVersion ?? 'unknown'}${nv.maxCudaVersion ? ` (CUDA ≤ ${nv.maxCudaVersion})` : ''}` : `no driver loaded (${nv.pciDevices} NVIDIA GPU${nv.pciDevices === 1 ? '' : 's'} on the PCI bus)`],
      [nv.nvidiaSmiWorks === true, nv.nvidiaSmi ? `nvidia-smi ${nv.nvidiaSmi}${nv.nvidiaSmiWorks ? '' : ' (fails)'}` : 'nvidia-smi not found'],
      ...nv.gpus.map((g, i): [boolean, string] => [true, `GPU ${i}: ${g.name}${g.busId ? ` [${g.busId}]` : ''}, ${bytes(g.totalBytes)} total, ${bytes(g.freeBytes)} free`]),
    ]],
    ['CUDA libraries', [
      lib('libcuda', cuda.libcuda, 'the driver API'),
      lib('cudart', cuda.cudart, 'CUDA runtime'),
      lib('cublas', cuda.cublas, 'matrix products'),
      lib('nvrtc', cuda.nvrtc, 'runtime kernel compiler'),
      lib('nccl', cuda.nccl, 'only for several GPUs'),
    ]],
    ['Vulkan', [
      [vulkan.loader !== null, `loader ${vulkan.loader ?? 'libvulkan.so.1 not found'}`],
      [vulkan.icds.length > 0, vulkan.icds.length > 0 ? `drivers (ICD) ${vulkan.icds.join(', ')}` : 'no driver (ICD) files'],
    ]],
  ];
  const lines = [`llamats doctor — ${r.platform}`];
  for (const [title, rows] of sections) lines.push('', title, ...rows.map(([ok, text]) => `  ${ok ? '✓' : '✗'} ${text}`));
  lines.push('', 'Next steps', ...(r.advice.length > 0 ? r.advice.map((a) => `  • ${a}`) : ['  • none: everything llamats can use is here']));
  return lines.join('\n') + '\n';
}
