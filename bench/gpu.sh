#!/usr/bin/env bash
# The one call on the lent GPU machine (no network, no Deno there; built here by
# bench/build_gpu.sh into .gpu/ and .gl/, which the call carries):
#
#   1. installs the Vulkan loader from .gl/*.deb and points it at the NVIDIA ICD;
#   2. unpacks the Deno binary (or a compiled step-gpu) from .gpu/ into a temp dir;
#   3. runs bench/gpu_main.ts: the adapter, the equivalence checks (WGSL kernels vs
#      composites, webgpu vs cpu, the 2-stage STEP pipeline) and the benchmark;
#   4. runs the PyTorch peer (bench/gpu_peer_torch.py) on the same shapes;
#   5. prints a short table last.
#
# Writes under $OUT (default out/gpu): gpu.log, adapter.json, checks.json, bench.json,
# torch.json, torch.log, machine.txt, summary.txt (8 files: all the call brings back).
#
# Usage: OUT=/some/dir bash bench/gpu.sh
# Environment: STEP_GPU_SHAPES, STEP_GPU_COMPOSITE_SHAPES ("d,L,V,T,B;..."),
# STEP_GPU_STEPS (timed steps, default 3), STEP_GPU_TIMEOUT, TORCH_TIMEOUT (seconds).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
SHAPES=${STEP_GPU_SHAPES:-"128,4,256,128,8;256,4,4096,256,8;1024,8,50257,1024,4"}
COMPOSITE=${STEP_GPU_COMPOSITE_SHAPES:-"128,4,256,128,8;256,4,4096,256,8"}
STEPS=${STEP_GPU_STEPS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  nproc
} >"$OUT/machine.txt"

# Deno's WebGPU opens libvulkan.so.1; the loader finds the driver through an ICD file.
if ! ldconfig -p | grep -q 'libvulkan\.so\.1 '; then
  for f in .gl/*.deb; do dpkg -x "$f" / && echo "installed $(basename "$f")" >>"$OUT/machine.txt"; done
  ldconfig
fi
icd=""
for c in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  if [[ -f $c ]]; then icd=$c && break; fi
done
if [[ -z $icd ]]; then
  icd=$(find / -xdev \( -name 'nvidia_icd*.json' \) -print 2>/dev/null | head -n 1)
fi
if [[ -n $icd ]]; then
  export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
  echo "vulkan icd: $icd" >>"$OUT/machine.txt"
else
  echo "vulkan icd: no NVIDIA ICD found; using the system's Vulkan drivers" >>"$OUT/machine.txt"
fi
export XDG_RUNTIME_DIR=$work DENO_DIR=$work/deno-dir DENO_NO_UPDATE_CHECK=1

if [[ -f .gpu/step-gpu.xz ]]; then
  xz -dc .gpu/step-gpu.xz >"$work/step-gpu" && chmod +x "$work/step-gpu"
  run=("$work/step-gpu")
else
  xz -dc .gpu/deno.xz >"$work/deno" && chmod +x "$work/deno"
  run=("$work/deno" run -A --unstable-webgpu --no-config --cached-only .gpu/step-gpu.js)
fi

timeout "${STEP_GPU_TIMEOUT:-390}" "${run[@]}" "$OUT" --shapes "$SHAPES" \
  --composite-shapes "$COMPOSITE" --steps "$STEPS" 2>&1 | grep --line-buffered -v XDG_RUNTIME_DIR | tee "$OUT/gpu.log"
status=${PIPESTATUS[0]}
echo "step-gpu exit status: $status" | tee -a "$OUT/gpu.log"

if command -v nvidia-smi >/dev/null; then
  timeout "${TORCH_TIMEOUT:-150}" python3 bench/gpu_peer_torch.py --shapes "$SHAPES" \
    --steps "$STEPS" >"$OUT/torch.json" 2>"$OUT/torch.log"
  echo "torch exit status: $?" >>"$OUT/torch.log"
else
  echo '{"results": []}' >"$OUT/torch.json"
  echo "no nvidia-smi: the PyTorch peer needs CUDA" >"$OUT/torch.log"
fi

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
out = sys.argv[1]

def load(name, default):
    try:
        with open(f"{out}/{name}") as f:
            return json.load(f)
    except Exception:
        return default

adapter = load("adapter.json", {})
checks = load("checks.json", None)
bench = load("bench.json", {"rows": [], "failures": []})
torch = load("torch.json", {"results": []})
mib = lambda b: "-" if b is None else f"{b / 2**20:.0f}"
rate = lambda r: "-" if r is None else f"{r:.0f}"
print(f"adapter: {adapter.get('name', '?')}{' (SOFTWARE FALLBACK)' if adapter.get('fallback') else ''}")
if checks is None:
    print("checks: not run")
else:
    cases = checks["fusedVsComposite"] + checks["webgpuVsCpu"]
    ok = sum(1 for c in cases if c["passed"])
    pipe = checks["pipeline"]
    pipe_text = f"pipeline {'ok' if pipe.get('passed') else 'FAIL'}" + (
        f" (worst step {pipe['worstStep']:.1e})" if "worstStep" in pipe else f" ({pipe.get('error')})")
    print(f"checks: kernels {ok}/{len(cases)} within 1e-5 fwd / 1e-4 grad, {pipe_text}")
print(f"torch {torch.get('torch', '-')} on {torch.get('device', '-')}")
key = lambda s: ",".join(str(x) for x in s)
rows = {}
for r in bench.get("rows", []):
    rows.setdefault(key(r["shape"]), {})[r["kernels"]] = r
for f in bench.get("failures", []):
    rows.setdefault(key(f["shape"]), {})[f["kernels"]] = {"error": f["error"]}
peer = {}
for r in torch.get("results", []):
    peer.setdefault(key(r["shape"]), {})[r["attention"]] = r
head = ("shape d,L,V,T,B", "webgpu fused", "webgpu composite", "torch plain", "torch sdpa",
        "webgpu peak MiB", "torch peak plain/sdpa", "model state meas/pred")
print("  ".join(f"{h:>21}" if i else f"{h:<22}" for i, h in enumerate(head)))
print("  (tokens/s; peaks in MiB over the timed steps; model state in MiB, predicted by the planner:")
print("   fp32, 16 B per parameter; webgpu peak = tfjs's GPU buffers, torch = max_memory_allocated)")
for shape in list(dict.fromkeys(list(rows) + list(peer))):
    w = rows.get(shape, {})
    t = peer.get(shape, {})
    fused, comp = w.get("fused", {}), w.get("composite", {})
    plain, sdpa = t.get("plain", {}), t.get("sdpa", {})
    cells = [
        rate(fused.get("tokensPerSec")) if "error" not in fused else "failed",
        rate(comp.get("tokensPerSec")) if "error" not in comp else "failed",
        rate(plain.get("tokensPerSec")) if "error" not in plain else "failed",
        rate(sdpa.get("tokensPerSec")) if "error" not in sdpa else "failed",
        mib(fused.get("gpuBytes")),
        f"{mib(plain.get('maxMemoryAllocated'))}/{mib(sdpa.get('maxMemoryAllocated'))}",
        f"{mib(fused.get('modelStateBytes'))}/{mib(fused.get('predictedModelStateBytes'))}",
    ]
    print(f"{shape:<22}  " + "  ".join(f"{c:>21}" for c in cells))
EOF
exit "$status"
