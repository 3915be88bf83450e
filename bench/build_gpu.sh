#!/usr/bin/env bash
# Builds what the lent GPU machine needs for bench/gpu.sh, into .gpu/ and .gl/
# (both git-ignored), and checks that the call's payload stays under 64 MiB.
#
#   .gpu/step-gpu.js  bench/gpu_main.ts and every npm dependency in one file
#                     (`deno bundle`): no node_modules, no network there
#   .gpu/deno.xz      this machine's Deno binary, xz-compressed, to run it
#   .gl/*.deb         the Vulkan loader (libvulkan1) that Deno's WebGPU opens
#
# Why not `deno compile`: it downloads the `denort` runtime from Deno's own
# download site, which these machines cannot reach (only the npm registry and
# Debian's archive are). With DENORT_BIN pointing at a denort binary of the same
# Deno version it compiles .gpu/step-gpu.xz instead, and bench/gpu.sh runs that.
#
# Usage: bash bench/build_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=$((64 * 1024 * 1024))
mkdir -p .gpu .gl
rm -f .gpu/step-gpu.js .gpu/step-gpu .gpu/step-gpu.xz .gpu/deno

if [[ -n "${DENORT_BIN:-}" && -x "${DENORT_BIN}" ]]; then
  rm -f .gpu/deno.xz .gpu/deno.version
  deno compile -A --unstable-webgpu -o .gpu/step-gpu bench/gpu_main.ts
  xz -T2 -6 .gpu/step-gpu
else
  deno bundle --platform=deno -o .gpu/step-gpu.js bench/gpu_main.ts
  # Compressing Deno takes a minute on two cores: keep it while the version matches.
  version=$(deno --version | head -n 1)
  if [[ ! -f .gpu/deno.xz || "$(cat .gpu/deno.version 2>/dev/null)" != "$version" ]]; then
    rm -f .gpu/deno.xz
    cp "$(readlink -f "$(command -v deno)")" .gpu/deno
    xz -T2 -6 .gpu/deno
    echo "$version" >.gpu/deno.version
  fi
fi

if ! compgen -G ".gl/libvulkan1_*.deb" >/dev/null; then
  # Debian's archive is reachable; a private list directory keeps the
  # system's apt state untouched.
  lists=$(mktemp -d)
  mkdir -p "$lists/partial"
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  apt-get "${o[@]}" update -qq
  (cd .gl && apt-get "${o[@]}" download libvulkan1)
  rm -rf "$lists"
fi

tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
  awk '{s += $1} END {print s + 0}')
carried=$(du -sb .gpu .gl | awk '{s += $1} END {print s}')
total=$((tracked + untracked + carried))
ls -l .gpu .gl
printf 'payload: tracked %d + untracked %d + .gpu/.gl %d = %d bytes (%.1f MiB of 64)\n' \
  "$tracked" "$untracked" "$carried" "$total" "$(echo "$total / 1048576" | bc -l)"
if ((total > LIMIT)); then
  echo "build_gpu: the payload is over 64 MiB; the device call would refuse it" >&2
  exit 1
fi
