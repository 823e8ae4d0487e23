#!/usr/bin/env bash
# The GPU figures of issues 3, 4 and 30, prepared to run unattended on a machine with one CUDA GPU.
#
#   benchmarks/gpu_check.sh speedrun RESULTS_DIR  # speedrun-gpu 3 times, then nanoGPT's GPU recipe
#   benchmarks/gpu_check.sh presets RESULTS_DIR   # the lecture and nanogpt presets (5000 steps each)
#   benchmarks/gpu_check.sh profile RESULTS_DIR   # benchmarks/gpu_profile.py: training tokens/s and MFU
#                                                 # with and without torch.compile, sampling at batch 1
#                                                 # and 64, serve with 1 and 64 clients, fsdp on one GPU
#
# Each part is sized to finish inside ten minutes on an H100: speedrun-gpu has a 20 s budget
# (about 30 s a run with start-up), nanoGPT's recipe took about 3 minutes on an A100, each
# 5000-step preset a few minutes, and the profile is planned for under 8 minutes (not yet run on
# a GPU). They are split so a lost part can be re-run alone.
#
# Needs: TINYGPT_DATA_DIR naming a folder with tinyshakespeare.txt (a GPU machine without internet
# cannot download it), and for nanoGPT's side NANOGPT_DIR naming a nanoGPT checkout (skipped when
# unset; in the profile it is nanoGPT's sampler, run on the CPU). Writes into RESULTS_DIR:
# reproduce.json (every tinygpt run, with its loss curve and wall time), nanogpt_gpu.json,
# gpu_profile.json, the logs, and nvidia-smi's name for the GPU. Nothing is written into the
# repository except runs/ (ignored by git); the profile's runs go to a temporary folder.
set -euo pipefail
part=${1:?usage: gpu_check.sh speedrun|presets|profile RESULTS_DIR}
results=$(mkdir -p "${2:?usage: gpu_check.sh speedrun|presets|profile RESULTS_DIR}" && cd "$2" && pwd)
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

copy_nanogpt() {  # nanogpt_side.py keeps nanoGPT outside the repository (a carried copy may sit inside it)
    rm -rf /tmp/nanoGPT && cp -r "$NANOGPT_DIR" /tmp/nanoGPT
}

case $part in
    speedrun)
        # Three runs: the time budget ends each at 20 s, so the spread is in the loss reached.
        for i in 1 2 3; do reproduce "speedrun-gpu-$i" speedrun-gpu; done
        if [ -n "${NANOGPT_DIR:-}" ]; then
            copy_nanogpt
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
    profile)
        # One script, four parts (train, sample, serve, fsdp); its JSON is rewritten after each part.
        if [ -n "${NANOGPT_DIR:-}" ]; then
            copy_nanogpt
        else
            echo "NANOGPT_DIR is not set: nanoGPT's sampler skipped"
        fi
        python benchmarks/gpu_profile.py --json "$results/gpu_profile.json" \
            ${NANOGPT_DIR:+--nanogpt-dir /tmp/nanoGPT} 2>&1 | tee "$results/gpu_profile.log"
        exit  # no reproduce.py runs to tabulate
        ;;
    *)
        echo "gpu_check.sh: unknown part '$part'; choose speedrun, presets or profile" >&2
        exit 2
        ;;
esac
python benchmarks/reproduce.py --table --results "$results/reproduce.json"
