"""Data-parallel training with torchrun: two CPU processes compute what one process computes.

Both runs use the same seed and the same global batch (batch_size is summed over processes), so
DDP's gradient averaging makes every step identical up to float rounding.
"""

import json
import shutil
import socket
import subprocess
import sys

import pytest

from tinygpt.core.devices import cpu_cores
from tinygpt.core.distributed import DistInfo
from tinygpt.data import rhyme_text

ARGS = ["--data", "{data}", "--tokenizer", "char", "--n-layer", "2", "--n-head", "2", "--n-embd", "32",
        "--block-size", "16", "--batch-size", "8", "--grad-accum", "2", "--max-iters", "20",
        "--eval-interval", "10", "--no-progress", "--sample-tokens", "0", "--threads", "1"]


ONE = [sys.executable]
TWO = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
QUIET = ["--no-progress", "--sample-tokens", "0", "--threads", "1"]


def _run(cmd_prefix, verb, args, out):
    """`tinygpt VERB ARGS --out OUT` under cmd_prefix (ONE or TWO processes): its metrics and its stdout."""
    proc = subprocess.run(cmd_prefix + ["-m", "tinygpt", verb, *args, "--out", str(out)], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], proc.stdout


def _train(cmd_prefix, data, out):
    return _run(cmd_prefix, "train", [a.format(data=data) for a in ARGS], out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "corpus.txt"
    path.write_text(rhyme_text() * 40, encoding="utf-8")  # ~22k characters
    return path


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, corpus):
    """One process's run of ARGS, trained once for the module: what two processes must match, and the base the
    fine-tuning tests start from (they only read it; a test that writes into it takes a copy)."""
    out = tmp_path_factory.mktemp("single") / "run"
    metrics, _ = _train(ONE, corpus, out)
    return out, metrics


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, corpus, one_process_run):
    _, single = one_process_run
    double, stdout = _train(TWO, corpus, tmp_path / "two")

    # Only rank 0 writes: one record per evaluation (steps 0, 10, 20), not one per process.
    assert [r["step"] for r in double] == [0, 10, 20]
    assert stdout.count("done: step 20") == 1
    for a, b in zip(single, double):
        assert a["tokens"] == b["tokens"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    assert double[-1]["val_loss"] < double[0]["val_loss"]  # and it did learn


def test_sft_on_two_processes_matches_one_process_when_conversations_differ_in_length(tmp_path, one_process_run):
    # Replies of 1 to 10 characters: each process's rows hold different numbers of assistant tokens,
    # so averaging each process's own mean would weigh a token by the rows it happened to share with.
    base, _ = one_process_run
    text = rhyme_text()
    replies = [text[10 * k : 10 * k + 1 + (7 * k) % 10].strip() for k in range(60)]
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": reply}]}
            for reply in replies if reply][:40]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    args = [str(base), "--data", str(data), "--batch-size", "4", "--max-iters", "20", "--eval-interval", "10",
            "--lr", "3e-3", *QUIET]
    single, _ = _run(ONE, "sft", args, tmp_path / "one")
    double, _ = _run(TWO, "sft", args, tmp_path / "two")
    assert [r["step"] for r in double] == [0, 10, 20]
    for a, b in zip(single, double):
        assert a["tokens"] == b["tokens"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    assert double[-1]["val_loss"] < double[0]["val_loss"]


def test_dpo_on_two_processes_matches_one_process_when_replies_differ_in_length(tmp_path, one_process_run):
    # Replies of 1 to 10 characters, and the SFT term: each process's rows hold different numbers of chosen tokens.
    base, _ = one_process_run
    text = rhyme_text()
    pairs = [{"prompt": text[k : k + 3], "chosen": text[10 * k : 10 * k + 1 + (7 * k) % 10],
              "rejected": text[10 * k + 5 : 10 * k + 7 + (3 * k) % 10]} for k in range(1, 41)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs if p["chosen"] != p["rejected"]), encoding="utf-8")
    args = [str(base), "--data", str(data), "--batch-size", "4", "--max-iters", "10", "--eval-interval", "5",
            "--lr", "3e-3", "--sft-weight", "1", *QUIET]
    single, _ = _run(ONE, "dpo", args, tmp_path / "one")
    double, _ = _run(TWO, "dpo", args, tmp_path / "two")
    assert [r["step"] for r in double] == [0, 5, 10]
    for a, b in zip(single, double):
        assert a["tokens"] == b["tokens"]
        for key in ("val_loss", "eval_rewards/margins", "eval_rewards/accuracies", "rewards/margins"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    assert abs(double[-1]["rewards/margins"]) > 1e-3  # the policy moved away from its reference


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_rl_on_two_processes_matches_one_process(tmp_path, one_process_run, parallel):
    # Rewarded for short replies, the policy's replies differ in length, so each process's rows hold
    # different numbers of reply tokens; the KL of each rollout follows the weights that sampled it.
    base, _ = one_process_run
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n"
                            for p, c in [("mary", "had a"), ("its", "was white")] * 4), encoding="utf-8")
    (tmp_path / "short.py").write_text("def short(prompt, reply):\n    return 1.0 / (1 + len(reply))\n")
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "mary"}\n{"prompt": "its"}\n' * 4, encoding="utf-8")
    _run(ONE, "sft", [str(base), "--data", str(data), "--max-iters", "30", "--lr", "1e-2", "--batch-size", "4",
                      "--val-fraction", "0", *QUIET], tmp_path / "sft")
    args = [str(tmp_path / "sft"), "--prompts", str(tmp_path / "prompts.jsonl"), "--reward",
            f"{tmp_path / 'short.py'}:short", "--algorithm", "grpo", "--group-size", "4", "--batch-size", "8",
            "--max-new-tokens", "8", "--max-iters", "6", "--eval-interval", "2", "--lr", "3e-3", "--val-fraction", "0",
            *QUIET]
    single, _ = _run(ONE, "rl", args, tmp_path / "one")
    # fsdp: the policy samples its rollouts while sharded (each step of the sampler gathers its weights).
    double, _ = _run(TWO, "rl", args + ["--parallel", parallel], tmp_path / "two")
    assert [r["step"] for r in double] == [0, 2, 4, 6]
    for a, b in zip(single[1:], double[1:]):
        assert a["reply_tokens"] == b["reply_tokens"]
        assert a["kl"] == pytest.approx(b["kl"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)  # the whole batch's, not rank 0's share
    assert abs(single[-1]["kl"]) > 1e-3  # the policy moved away from the sft model (a sampled estimate: either sign)


def test_two_nodes_of_one_process_each_match_one_process(tmp_path, corpus):
    # Two torchrun launchers on this machine stand for two nodes (static rendezvous on localhost): each
    # process is rank 0 or 1 of the world but local rank 0 of its node, so it takes its node's cores.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The default thread count: this node's cores, for a model whose steps are big enough that the rule
    # (devices.choose_threads) gives it more than one thread.
    auto = [a for a in ARGS if a not in ("--threads", "1")]
    auto[auto.index("--n-embd") + 1], auto[auto.index("--block-size") + 1] = "256", "32"
    args = [a.format(data=corpus) for a in auto] + ["--out", str(tmp_path / "two")]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                               f"--node-rank={k}", "--master-addr=127.0.0.1", f"--master-port={port}", "-m",
                               "tinygpt", "train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    outputs = [node.communicate(timeout=240) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "x2 processes" in outputs[0][0] and outputs[1][0] == ""  # rank 0 logs; the other node prints nothing
    assert f"{cpu_cores()} thread" in outputs[0][0]  # its node's cores, not the cores shared by the world
    double = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    single, _ = _run(ONE, "train", [a.format(data=corpus) for a in auto], tmp_path / "one")
    assert [r["step"] for r in double] == [0, 10, 20]
    # Two processes sum each weight's gradient in two halves, one process in one go: the validation losses differ
    # by rounding, up to 2e-7 at step 10, which this model's high rate grows by step 20 to up to 9e-5 with the
    # fused attention kernel and 1.5e-4 with the two products (seeds 1, 2, 3 and 1337). Training on the wrong
    # rows, or gradients not averaged, is off by far more.
    for a, b in zip(single, double):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=5e-4)


def test_each_process_reads_its_place_from_torchruns_environment():
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}  # 2 nodes of 2
    assert DistInfo.from_environment(env) == DistInfo(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert not DistInfo.from_environment({}).enabled and DistInfo.from_environment({}).local_world_size == 1


def test_fsdp_on_two_processes_matches_one_process_and_resumes_in_either(tmp_path, corpus, one_process_run):
    # --parallel fsdp shards weights, gradients and AdamW's moments across the processes; checkpoints stay
    # whole, so a sharded run resumes as one process (and the other way round) with the same numbers.
    base, single = one_process_run
    shutil.copytree(base, tmp_path / "one")  # resumed below: the module's run stays as it was
    sharded, stdout = _run(TWO, "train", [a.format(data=corpus) for a in ARGS] + ["--parallel", "fsdp"],
                           tmp_path / "two")
    assert [r["step"] for r in sharded] == [0, 10, 20] and stdout.count("done: step 20") == 1
    for a, b in zip(single, sharded):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    more = ["--resume", None, "--max-iters", "30", *QUIET]
    for prefix, run in ((ONE, "two"), (TWO, "one")):  # the sharded run goes on alone, the single one sharded
        more[1] = str(tmp_path / run)
        extra = ["--parallel", "fsdp"] if prefix is TWO else []
        proc = subprocess.run(prefix + ["-m", "tinygpt", "train", *more, *extra], capture_output=True, text=True,
                              timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
    ends = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1]) for run in ("one", "two")]
    assert ends[0]["step"] == ends[1]["step"] == 30
    assert ends[0]["val_loss"] == pytest.approx(ends[1]["val_loss"], abs=1e-5)


def test_fsdp_sft_evaluates_in_lockstep_when_a_process_has_nothing_to_score(tmp_path, one_process_run):
    # Two held-out conversations make one evaluation chunk: under FSDP the idle process still runs a
    # forward with it (every forward gathers the weights from all processes), without counting it.
    base, _ = one_process_run
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": w}]}
            for w in rhyme_text().split()[:20]]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    args = [str(base), "--data", str(data), "--batch-size", "4", "--max-iters", "6", "--eval-interval", "3",
            "--lr", "3e-3", *QUIET]
    single, _ = _run(ONE, "sft", args, tmp_path / "one")
    sharded, _ = _run(TWO, "sft", args + ["--parallel", "fsdp"], tmp_path / "two")
    for a, b in zip(single, sharded):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)


def test_fsdp_refuses_muon_and_the_encoder_decoder_in_one_line(tmp_path, capsys):
    from tinygpt.cli import main

    assert main(["train", "--optimizer", "muon", "--parallel", "fsdp", "--out", str(tmp_path / "x")]) == 2
    assert "Muon orthogonalises whole matrices" in capsys.readouterr().err
    proc = subprocess.run(TWO + ["-m", "tinygpt", "train", "--preset", "seq2seq-demo", "--max-iters", "1",
                                 "--parallel", "fsdp", "--out", str(tmp_path / "y"), *QUIET],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert proc.stderr.count("tinygpt: error: --parallel fsdp does not shard the encoder-decoder yet") == 2
