#!/usr/bin/env bash
# The `paper` preset of medpersam-warp on JSRT, run on a lent GPU in ONE device call
# (Dice and seconds of the paper's schedule where a GPU is at hand).
# docs/medpersam_cpu_preset.md "Paper preset on a GPU" says how to read the result.
#
#   bash benchmarks/device_paper_jsrt.sh prepare   # here, with the network: wheels + data staging
#   bash benchmarks/device_paper_jsrt.sh run       # there (device tool), or here with DEVICE=cpu
#
# prepare: downloads the wheels the device image lacks (MONAI, segment-anything: both pure
#   Python) into .whl/ and copies $DATA/jsrt into .device-data/jsrt (both git-ignored, never
#   committed; about 11 MiB together, under the device tool's 64 MiB). The device call is then
#     run(command="bash benchmarks/device_paper_jsrt.sh run", carry=[".whl", ".device-data"],
#         timeout_s=560)
# run: installs the carried wheels into /tmp/site, checks CUDA, and runs
#   `oneshotsam benchmark jsrt-refs --preset paper --device $DEVICE --no-peer` on REFS
#   references (WASHED of them washed out) x TARGETS targets, writing the table, the JSON and
#   the GPU's name under $OUT. The elastix peer is not run there (its CPU figures are the CPU
#   protocol's). A dry run on the CPU, to check the path before spending device time:
#     DEVICE=cpu REFS=1 WASHED=0 TARGETS=2 EXTRA="--set epochs=1" bash benchmarks/device_paper_jsrt.sh run
set -euo pipefail

cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
DEVICE=${DEVICE:-cuda}
REFS=${REFS:-2}
WASHED=${WASHED:-1}
TARGETS=${TARGETS:-20}
EXTRA=${EXTRA:-}
OUT=${OUT:-out/device}

case "${1:-}" in
  prepare)
    if [ ! -d "$DATA/jsrt" ]; then
      echo "no JSRT folder at $DATA/jsrt: set DATA to the folder holding jsrt/" >&2
      exit 2
    fi
    ver() { python3 -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
    monai=$(ver monai); sam=$(ver segment-anything)
    mkdir -p .whl .device-data
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation py --platform any -d .whl "monai==${monai:-1.6.1}" "segment-anything==${sam:-1.0}"
    rm -rf .device-data/jsrt && cp -r "$DATA/jsrt" .device-data/jsrt
    du -sh .whl .device-data
    ;;
  run)
    mkdir -p "$OUT"
    if ls .whl/*.whl >/dev/null 2>&1; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
      export PYTHONPATH=/tmp/site:OneShotSAM
    else
      export PYTHONPATH=OneShotSAM${PYTHONPATH:+:$PYTHONPATH}
    fi
    data=.device-data
    [ -d "$data/jsrt" ] || data=$DATA
    export PYTHONUNBUFFERED=1
    python3 - "$DEVICE" <<'EOF' | tee "$OUT/device.txt"
import sys, torch
dev = sys.argv[1]
print("torch", torch.__version__, "cuda available", torch.cuda.is_available())
if dev == "cuda":
    if not torch.cuda.is_available():
        sys.exit("CUDA asked for but torch sees no GPU")
    print("gpu", torch.cuda.get_device_name(0))
EOF
    # shellcheck disable=SC2086
    python3 -m oneshotsam.cli benchmark jsrt-refs --data "$data" --preset paper --device "$DEVICE" \
      --refs "$REFS" --washed "$WASHED" --targets "$TARGETS" --no-peer \
      --json "$OUT/paper_jsrt.json" $EXTRA 2>&1 | tee "$OUT/paper_jsrt.log"
    ;;
  *)
    echo "usage: bash benchmarks/device_paper_jsrt.sh prepare|run (see the comments at its top)" >&2
    exit 2
    ;;
esac
