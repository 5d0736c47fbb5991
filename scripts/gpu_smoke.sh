#!/usr/bin/env bash
# GPU smoke run: train one tiny epoch from the bundle, run its inference and evaluation, and answer one
# automatic and one interactive request through the MONAI Label server, printing the device and timings.
#
#   bash scripts/gpu_smoke.sh [OUT_DIR]
#
# Runs on a CUDA machine (everything on the GPU, chosen automatically) and on the CPU alike (CI runs it there,
# with the tiny network: tests/bundle/test_gpu_smoke.py). Environment:
#   SMOKE_TINY=1       tiny network (no LiteMedSAM / MiniLM weights; seconds on a CPU)
#   SMOKE_IMAGES=N     phantom images (default 12)
#   SMOKE_PORT=P       server port (default: a free one)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$ROOT/bundles/radvlsm_breast_us"
OUT="$(realpath -m "${1:-$(mktemp -d -t radvlsm-smoke-XXXX)}")"
IMAGES="${SMOKE_IMAGES:-12}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

NET=()
CONF=()
if [[ "${SMOKE_TINY:-0}" == "1" ]]; then
  NET=(--network_def#variant tiny --network_def#text_encoder tiny --network_def#embed_dim 32)
  CONF=(--conf network_def#variant tiny --conf network_def#text_encoder tiny --conf network_def#embed_dim 32)
fi

"$PY" - <<'EOF'
import torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)"
print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}; GPU: {name}; torch {torch.__version__}")
EOF
echo "network: $([[ ${#NET[@]} -gt 0 ]] && echo tiny || echo 'bundle default (LiteMedSAM)'); images: $IMAGES; output: $OUT"

now() { date +%s.%N; }
step() {  # step NAME COMMAND...: run it, log to OUT/NAME.log, print its time (the log's tail on failure)
  local name="$1" t0 t1
  shift
  t0=$(now)
  if ! "$@" >"$OUT/$name.log" 2>&1; then
    echo "FAILED: $name (log: $OUT/$name.log)" >&2
    tail -40 "$OUT/$name.log" >&2
    exit 1
  fi
  t1=$(now)
  awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN { printf "%-22s %7.1f s\n", n, b - a }'
}
bundle() {
  local run_id="$1" config="$2"
  shift 2
  "$PY" -m monai.bundle run "$run_id" --bundle_root "$BUNDLE" --config_file "$BUNDLE/configs/$config" \
    --meta_file "$BUNDLE/configs/metadata.json" --logging_file "$BUNDLE/configs/logging.conf" "${NET[@]}" "$@"
}

step train bundle training train.json --dataset_dir "$OUT/phantom" --phantom_images "$IMAGES" \
  --output_dir "$OUT/train" --epochs_align 1 --epochs_segment 1 --epochs_region 1 --epochs_fusion 2
step bundle_inference bundle inferring inference.json --input_dir "$OUT/phantom/Images" \
  --model_path "$OUT/train/model.pt" --output_dir "$OUT/predictions"
step bundle_evaluation bundle evaluating evaluate.json --dataset_dir "$OUT/phantom" --split all \
  --model_path "$OUT/train/model.pt" --output_dir "$OUT/eval" --n_overlays 2

mkdir -p "$OUT/studies"
cp "$OUT"/phantom/Images/*.png "$OUT/studies/"
PORT="${SMOKE_PORT:-$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
t0=$(now)
(cd "$ROOT" && MONAI_LABEL_AUTO_UPDATE_SCORING=false exec setsid monailabel start_server --app monailabel_app \
  --studies "$OUT/studies" --conf models radvlsm --conf model_dir "$OUT/train" --conf work_dir "$OUT/label_work" \
  --conf skip_trainers true "${CONF[@]}" --host 127.0.0.1 --port "$PORT") >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM -- "-$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

"$PY" - "http://127.0.0.1:$PORT" "$OUT/studies" "$t0" <<'EOF'
import json
import sys
import time
from pathlib import Path

import requests
from PIL import Image

url, studies, t0 = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + 600
while True:
    try:
        if requests.get(f"{url}/info/", timeout=10).status_code == 200:
            break
    except requests.ConnectionError:
        pass
    if time.time() > deadline:
        sys.exit("server not up in 600 s")
    time.sleep(1)
print(f"{'server_start':<22} {time.time() - t0:7.1f} s")
image = sorted(studies.glob("*.png"))[0]
w, h = Image.open(image).size
for model, params in (("radvlsm_auto", {}), ("radvlsm_interactive", {"foreground": [[w // 2, h // 2]]})):
    started = time.time()
    r = requests.post(f"{url}/infer/{model}", params={"image": image.stem, "output": "json"},
                      data={"params": json.dumps(params)}, timeout=600)  # fmt: skip
    if r.status_code != 200:
        sys.exit(f"{model}: HTTP {r.status_code}: {r.text[:500]}")
    result = r.json()
    served = result["model"]
    print(f"{model:<22} {time.time() - started:7.1f} s  (HTTP 200, diagnosis {result.get('diagnosis')}, "
          f"trained weights {served['trained']})")  # fmt: skip
    if not served["trained"]:
        sys.exit(f"{model}: the trained weights were not served: {served['warning']}")
EOF
grep -o "network ready on [a-z0-9:]*" "$OUT/server.log" | head -1 | sed 's/^/server: /' || true
"$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); print('evaluation:', {k: m[k] for k in ('n_images', 'dice', 'auc')})" \
  "$OUT/eval/metrics.json"
echo "smoke run passed"
