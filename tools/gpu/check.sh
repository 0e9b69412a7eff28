#!/usr/bin/env bash
# The GPU device check in one call: `bash .gpu/check.sh [check.py options]` with $OUT set.
# Unpacks the Vulkan loader from debs/ when the machine has none, points Vulkan and EGL at the
# NVIDIA driver's files, then runs check.py (its docstring says what it checks and writes).
# From the repository (no bin/ or bench.py beside it) pass --bin and --bench-py yourself.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# `grep -q` would exit early and, under pipefail, fail the pipeline by ldconfig's SIGPIPE.
if ! ldconfig -p | grep -F libvulkan.so.1 >/dev/null && compgen -G "$DIR/debs/*.deb" >/dev/null; then
    for f in "$DIR"/debs/*.deb; do
        dpkg -x "$f" / || echo "check.sh: cannot unpack $f" >&2
    done
    ldconfig
fi
if [[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
if [[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ]]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
export PYTHONUNBUFFERED=1

# The prepared binaries travel xz-compressed (the device tool carries 64 MiB); python3's lzma
# unpacks them, as the device may have no xz.
for f in "$DIR"/bin/*.xz; do
    [[ -e "$f" ]] || continue
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "${f%.xz}"
    chmod +x "${f%.xz}"
done

args=()
if [[ -d "$DIR/bin" ]]; then
    args+=(--bin "$DIR/bin")
fi
if [[ -f "$DIR/bench.py" ]]; then
    args+=(--bench-py "$DIR/bench.py")
fi
exec python3 "$DIR/check.py" ${args[@]+"${args[@]}"} "$@"
