#!/usr/bin/env bash
# `gnn1000 bench paper` on a bare GPU machine in one call (issue #23).
#
#   bench/gpu/run.sh download   # here, on the CPU machine: wheels the device lacks into .whl/ (ignored by git)
#   bench/gpu/run.sh device     # there, in the repository root: install .whl/ offline, run the benchmark into $OUT
#
# The device image has Python 3.12, PyTorch and torch-geometric (and with them numpy, psutil, tqdm,
# requests); it lacks gin-config, OGB and what OGB imports (pandas, scikit-learn, scipy), and pymetis.
# One call carries at most 64 MiB, so the wheels stay under 60 MiB: matplotlib (with pillow, about
# 19 MiB more) is left out; without it the benchmark writes paper.json and paper.md, and
# `gnn1000 bench paper --replot OUT/paper.json --out DIR` draws the plot here afterwards.
# SCALE (default paper), MINUTES (default 7) and DEVICE (default cuda; cpu for a smoke test) change the
# device run; PYTHON (default python3) and WHEELS (default .whl) the interpreter and the wheel folder.
set -euo pipefail
cd "$(dirname "$0")/../.."

WHEELS=${WHEELS:-.whl}
PYTHON=${PYTHON:-python3}
# The versions this project is tested with; pure-Python wheels match --platform any.
PACKAGES="
gin-config==0.5.0
ogb==1.3.6 outdated==0.2.2 littleutils==0.2.4 six==1.17.0
pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6
scikit-learn==1.9.1 scipy==1.17.1 joblib==1.6.0 threadpoolctl==3.8.0
pymetis==2025.2.2
"
LIMIT_MIB=60

download() {
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    # shellcheck disable=SC2086  # one argument per package
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$WHEELS" $PACKAGES
    # gnn1000 itself as a wheel: its entry points need installed metadata, and building the checkout on
    # the device needs setuptools >= 77, which the image may lack. The device tries the fresh checkout first.
    "$PYTHON" -m pip wheel --quiet --no-deps -w "$WHEELS" .
    local mib
    mib=$(du -sm "$WHEELS" | cut -f1)
    echo "$WHEELS: $(ls "$WHEELS" | wc -l) wheels, $mib MiB (limit $LIMIT_MIB)"
    if [ "$mib" -ge "$LIMIT_MIB" ]; then
        echo "error: $WHEELS holds $mib MiB, more than $LIMIT_MIB MiB: a device call carries at most 64 MiB." >&2
        exit 1
    fi
}

device() {
    : "${OUT:?OUT must name the folder the results go to}"
    OUT=$(realpath -m "$OUT")  # the benchmark runs from /tmp
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "error: no wheels in $WHEELS: run '$0 download' here first and carry $WHEELS." >&2; exit 1; }
    local deps=()
    for whl in "$WHEELS"/*.whl; do [[ "$(basename "$whl")" == gnn1000-* ]] || deps+=("$whl"); done
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${deps[@]}"
    # The checkout as it is now; if the image cannot build it, the wheel built by 'download'.
    if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
            --upgrade --target /tmp/gnn1000 . 2>/tmp/gnn1000-build.log; then
        echo "note: building the checkout failed ($(tail -1 /tmp/gnn1000-build.log)); installing the wheel from 'download'"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gnn1000 \
            "$WHEELS"/gnn1000-*.whl
    fi
    export PYTHONPATH=/tmp/gnn1000:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    "$PYTHON" -c "import torch, torch_geometric; print('torch', torch.__version__, 'torch_geometric', torch_geometric.__version__, 'cuda', torch.version.cuda)"
    # The shared datasets (ogbg-molhiv) where they are; the benchmark records a skip otherwise.
    for root in "${GNN1000_DATA:-}" ../shared/datasets shared/datasets; do
        if [ -n "$root" ] && [ -d "$root/ogb" ]; then GNN1000_DATA=$(realpath "$root"); export GNN1000_DATA; break; fi
    done
    export GNN1000_CACHE=${GNN1000_CACHE:-/tmp/gnn1000-cache}
    cd /tmp  # import gnn1000 from /tmp/gnn1000, not from the checkout's folder of the same name
    "$PYTHON" -m gnn1000 bench paper --scale "${SCALE:-paper}" --device "${DEVICE:-cuda}" --minutes "${MINUTES:-7}" --out "$OUT"
}

case "${1:-}" in
    download) download ;;
    device) device ;;
    *) echo "usage: $0 download|device   (download: here, into $WHEELS; device: on the GPU machine, with OUT=folder)" >&2
       exit 2 ;;
esac
