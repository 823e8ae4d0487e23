#!/usr/bin/env bash
# The GPU figures of issues 3 and 4, prepared to run unattended on a machine with one CUDA GPU.
#
#   benchmarks/gpu_check.sh speedrun RESULTS_DIR  # speedrun-gpu 3 times, then nanoGPT's GPU recipe
#   benchmarks/gpu_check.sh presets RESULTS_DIR   # the lecture and nanogpt presets (5000 steps each)
#
# Each part is sized to finish inside ten minutes on an H100: speedrun-gpu has a 20 s budget
# (about 30 s a run with start-up), nanoGPT's recipe took about 3 minutes on an A100, and each
# 5000-step preset a few minutes. They are split so a lost part can be re-run alone.
#
# Needs: TINYGPT_DATA_DIR naming a folder with tinyshakespeare.txt (a GPU machine without internet
# cannot download it), and for nanoGPT's side NANOGPT_DIR naming a nanoGPT checkout (skipped when
# unset). Writes into RESULTS_DIR: reproduce.json (every tinygpt run, with its loss curve and wall
# time), nanogpt_gpu.json, the logs, and nvidia-smi's name for the GPU. Nothing is written into
# the repository except runs/ (ignored by git).
set -euo pipefail
part=${1:?usage: gpu_check.sh speedrun|presets RESULTS_DIR}
results=$(mkdir -p "${2:?usage: gpu_check.sh speedrun|presets RESULTS_DIR}" && cd "$2" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

# The GPU machine's own PyTorch stays: install tinygpt alone, without touching its dependencies.
command -v tinygpt >/dev/null || python -m pip install --quiet --no-deps --no-build-isolation -e .
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU: this script is for GPU machines'"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$results/gpu.txt"

reproduce() {  # LABEL PRESET: one preset through the command line, judged by its check block
    python benchmarks/reproduce.py "$2" --label "$1" --results "$results/reproduce.json" \
        --runs-dir runs/gpu_check 2>&1 | tee "$results/$1.log"
}

case $part in
    speedrun)
        # Three runs: the time budget ends each at 20 s, so the spread is in the loss reached.
        for i in 1 2 3; do reproduce "speedrun-gpu-$i" speedrun-gpu; done
        if [ -n "${NANOGPT_DIR:-}" ]; then
            # nanogpt_side.py keeps nanoGPT outside the repository (a carried copy may sit inside it).
            rm -rf /tmp/nanoGPT && cp -r "$NANOGPT_DIR" /tmp/nanoGPT
            python benchmarks/nanogpt_side.py --nanogpt-dir /tmp/nanoGPT --what train --recipe gpu \
                --text "$TINYGPT_DATA_DIR/tinyshakespeare.txt" --work-dir /tmp/nanogpt_gpu \
                --progress-every 500 --json "$results/nanogpt_gpu.json" 2>&1 | tee "$results/nanogpt_gpu.log"
        else
            echo "NANOGPT_DIR is not set: nanoGPT's GPU recipe skipped"
        fi
        ;;
    presets)
        reproduce lecture lecture
        reproduce nanogpt nanogpt
        ;;
    *)
        echo "gpu_check.sh: unknown part '$part'; choose speedrun or presets" >&2
        exit 2
        ;;
esac
python benchmarks/reproduce.py --table --results "$results/reproduce.json"
