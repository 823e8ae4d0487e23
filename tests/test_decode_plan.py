"""The decode plan (model/decode_plan.py): sampling's one-token step with the modules taken apart once gives
bit-identical logits to the model's own cached forward, for every kind of GPT a run trains, one row or
several, float32, bfloat16, int8 or with LoRA adapters; models it does not cover take the general path; the
sampler's tokens do not change; a plan made stale by a thread change or converted weights is made again."""

import pytest
import torch

from tinygpt.config import ModelConfig, TrainConfig
from tinygpt.generation import Decoder, Row, SamplingConfig
from tinygpt.model import build_model
from tinygpt.model.decode_plan import DecodePlan
from tinygpt.model.lora import add_lora
from tinygpt.model.quantize import quantize_int8

V, BLOCK = 19, 12
KINDS = {
    "lecture": {},  # learned positions, LayerNorm, ReLU, biases
    "modern": {"pos_emb": "rope", "qk_norm": True, "norm": "rmsnorm", "activation": "relu2", "bias": False,
               "tie_weights": True},
    "gpt2": {"activation": "gelu_tanh", "qkv_bias": True, "head_bias": False, "tie_weights": True},
    "handwritten-gelu": {"norm": "handwritten", "activation": "gelu"},
    "no-norm": {"norm": "none", "attn_proj": False, "mlp_proj": False, "mlp_ratio": 1},
    "attention-only": {"mlp_ratio": 0},
}


def small_model(**extra):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, init="normal", **extra)
    return build_model(cfg.validate()).eval()


@pytest.fixture
def two_threads():
    """The single-row split (layers.ThreadedLinear) runs with two threads or more: make sure it does."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("rows", ["1", "3", "3 ragged"])
@pytest.mark.parametrize("kind", [*KINDS, "int8", "lora", "bfloat16"])
def test_plan_gives_the_general_paths_logits_bit_for_bit(kind, rows, two_threads):
    model = small_model(**KINDS.get(kind, {}))
    if kind == "int8":
        quantize_int8(model)
    if kind == "bfloat16":  # sampling a run saved in bfloat16 (--dtype)
        model.to(torch.bfloat16)
    if kind == "lora":  # adapters beside the frozen weights, trained a little (B is zero at first)
        add_lora(model, TrainConfig(lora_rank=2))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    n = int(rows[0])
    # Ragged: the rows' prompts are 3, 1 and 2 tokens, right-padded, as a server's batch holds them.
    lengths = [3, 1, 2] if "ragged" in rows else [3] * n
    prompt = torch.randint(0, V, (n, 3), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        plan = DecodePlan.build(model)
        assert plan is not None
        general, planned = model.new_cache(n), model.new_cache(n)
        for cache in (general, planned):
            model(prompt, cache=cache)
            cache.set_lengths(lengths)
        ids = prompt[torch.arange(n), torch.tensor(lengths) - 1]
        for _ in range(BLOCK - 3):  # the longest row to the last position of the context
            assert plan.fits(planned)
            expected, _ = model(ids[:, None], cache=general)  # (n, 1, V)
            got = plan.step(ids, planned)  # (n, V)
            assert torch.equal(got, expected[:, -1])
            ids = got.argmax(-1)
        assert torch.equal(planned.k, general.k) and torch.equal(planned.v, general.v)
        assert planned.lengths == general.lengths == [length + BLOCK - 3 for length in lengths]
        assert not plan.fits(planned)  # no position left: the decoder's window path takes over


@pytest.mark.parametrize("case", ["heads", "post-norm", "no-residual", "training", "autograd", "hooked"])
def test_models_the_plan_does_not_cover_take_the_general_path(case):
    extra = {"heads": {"attention": "heads"}, "post-norm": {"norm_position": "post"},
             "no-residual": {"residual": False}}.get(case, {})
    model = small_model(**extra)
    if case == "training":
        model.train()
    if case == "hooked":  # the playground's inside view watches module calls
        model.blocks[0].attn.register_forward_hook(lambda module, args, out: None)
    if case == "autograd":
        assert DecodePlan.build(model) is None
        return
    with torch.inference_mode():
        assert DecodePlan.build(model) is None


@pytest.mark.parametrize("context", ["exact", "shift"])
@pytest.mark.parametrize("kind", ["lecture", "modern"])
def test_the_sampler_draws_the_same_tokens_with_and_without_the_plan(kind, context, two_threads):
    """Rows of different lengths, one joining later and one finishing early, as a server's batch runs them."""
    model = small_model(**KINDS[kind])

    def sample(use_plan: bool):
        def row(prompt, n, seed):
            return Row(prompt, SamplingConfig(n, temperature=1.0, top_k=8), torch.Generator().manual_seed(seed))

        decoder = Decoder(model, [row([1, 2, 3], 30, 5), row([4], 10, 6)], context=context)
        if not use_plan:
            decoder.plan = None
        owner, tokens = ["a", "b"], {"a": [], "b": [], "c": []}  # each request's tokens, whatever its row
        while not decoder.done:
            for i, token in decoder.step():
                tokens[owner[i]].append(token)
            moved = decoder.drop_finished()
            owner = [owner[old] for old in sorted(moved, key=moved.get)]
            if len(tokens["a"]) == 3:
                decoder.add(row([7, 8], 20, 7))
                owner.append("c")
        return decoder, tokens

    planned, tokens = sample(True)
    assert isinstance(planned.plan, DecodePlan)  # past the 12-token context: windows and plan steps
    assert [len(t) for t in tokens.values()] == [30, 10, 20]
    assert sample(False)[1] == tokens


def test_a_stale_plan_is_made_again(two_threads):
    model = small_model()
    with torch.inference_mode():
        plan = DecodePlan.build(model)
        assert plan.current()
        torch.set_num_threads(1)  # its single-row splits were made for two threads
        assert not plan.current()
        torch.set_num_threads(2)
        assert plan.current()
    model.double()  # new tensors: the plan's views read the old ones
    assert not plan.current()

    def sample(use_plan: bool):
        row = Row([1], SamplingConfig(8, temperature=1.0), torch.Generator().manual_seed(0))
        decoder = Decoder(model, [row])
        decoder.plan = plan if use_plan else None
        while not decoder.done:
            decoder.step()
        return decoder

    decoder = sample(True)
    assert decoder.plan is not plan and decoder.plan.current()  # the decoder made a new one
    assert decoder.ids == sample(False).ids


def test_a_plan_sees_weights_loaded_into_the_model_after_it_was_made(two_threads):
    """`serve --watch` loads each new checkpoint into the served model between steps: a decoder made before
    samples from the new weights, as a fresh one does."""
    model, trained = small_model(), small_model()  # the same model, then trained a little (below)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    old = Decoder(model, [Row([1], SamplingConfig(4, temperature=1.0), torch.Generator().manual_seed(0))])
    while not old.done:
        old.step()
    plan = old.plan
    model.load_canonical_state_dict(trained.canonical_state_dict())  # copies into the model's own tensors

    def sample(decoder):
        decoder.add(Row([2, 3], SamplingConfig(6, temperature=1.0), torch.Generator().manual_seed(1)))
        while not decoder.done:
            decoder.step()
        return decoder.ids[-1]

    assert sample(old) == sample(Decoder(model))
    assert old.plan is plan and plan.current()  # the same plan, reading the new values
