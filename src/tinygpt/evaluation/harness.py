"""EleutherAI's lm-evaluation-harness on a tinygpt run, in this process: `tinygpt eval RUN --tasks NAMES`.

    results = run_tasks(run, ["arc_easy", "wikitext"], limit=100)    # lm_eval.simple_evaluate's results
    lm = TinyGPTLM(run.model, run.tokenizer)                         # any harness entry point takes it

`TinyGPTLM` is the harness's model interface (`lm_eval.api.model.TemplateLM`) over a tinygpt model and
tokenizer, any kind (char and word included):

- loglikelihood(context, continuation): the continuation's log-probability after the context, and
  whether greedy decoding would have written it. Context and continuation are split as the harness
  splits them for every model (its `_encode_pair`); an empty context starts after the prefix token.
- loglikelihood_rolling(text): a whole document's log-probability, in the harness's disjoint windows
  of block_size tokens, each reading one token before it (the first reads the prefix token).
- generate_until(context, until): greedy (or sampled, if the task says so) text, cut at the stop
  strings and the end token, as `tinygpt sample --temperature 0` writes it.

The prefix and end tokens are the tokenizer's boundary tokens (Tokenizer.boundary_tokens): the token
an empty prompt starts from, and a chat model's <|end|>. `tinygpt serve` tells the harness's
`local-completions` client the same through /tokenizer_info, and scores with the same function
(generation/score.py), so in-process and server numbers agree.

Text the tokenizer cannot encode (a character a char model never saw, a word a word model does not
know) is scored as impossible: log-likelihood -inf (a choice that is never picked, a perplexity of
inf), an empty generation, and a note that says how many.
"""

from __future__ import annotations

import math

from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import handle_stop_sequences
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from ..core.errors import TinyGPTError
from ..generation.complete import complete
from ..generation.sampling import SamplingConfig
from ..generation.score import score

CHUNK = 256  # sequences scored between progress updates


class TinyGPTLM(TemplateLM):
    """A tinygpt model as the harness's LM (see the module docstring)."""

    def __init__(self, model, tokenizer, batch_size: int = 16, chat: bool = False, max_gen_toks: int = 256,
                 seed: int = 1234):
        super().__init__()
        if batch_size < 1:
            raise TinyGPTError(f"--batch-size must be 1 or more, got {batch_size}")
        self.model, self.tok, self.batch_size, self.max_gen_toks, self.seed = model, tokenizer, batch_size, \
            max_gen_toks, seed
        self.block_size = model.config.block_size
        bos, eos = tokenizer.boundary_tokens(chat)
        self._prefix = tokenizer.token_to_id(bos) if bos is not None else tokenizer.start_ids()[0]
        self._eot = tokenizer.token_to_id(eos) if eos is not None else self._prefix
        self.unencodable = 0  # requests whose text the tokenizer could not encode

    # ---- what the harness reads ---------------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def prefix_token_id(self) -> int:
        return self._prefix

    @property
    def max_length(self) -> int:
        return self.block_size

    @property
    def tokenizer_name(self) -> str:
        return f"tinygpt-{self.tok.kind}"

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tok.encode(string)  # tinygpt adds no special tokens around a text

    def tok_decode(self, ids) -> str:
        return self.tok.decode(ids)

    # ---- loglikelihood ------------------------------------------------------------------------------

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """TemplateLM's, except that a pair the tokenizer cannot encode scores -inf instead of failing all."""
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        encoded, where = [], []
        for i, request in enumerate(requests):
            context, continuation = request.args
            try:
                if context == "":
                    cont = self.tok_encode(continuation)
                    ctx, cont = ([self.prefix_token_id], cont) if cont[:1] != [self.prefix_token_id] else \
                        (cont[:1], cont[1:])
                else:
                    ctx, cont = self._encode_pair(context, continuation)
            except TinyGPTError:
                results[i] = (-math.inf, False)
                self.unencodable += 1
                continue
            encoded.append(((context, continuation), ctx, cont))
            where.append(i)
        for i, result in zip(where, self._loglikelihood_tokens(encoded, disable_tqdm=disable_tqdm)):
            results[i] = result
        return results

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, cache: bool = True):
        """(log-likelihood, greedy) of each continuation after its context. A continuation of up to
        block_size tokens is one sequence, the last block_size + 1 tokens of context + continuation; a
        longer one is cut into pieces of block_size tokens, each read after the block_size tokens before it."""
        windows, owner, counts = [], [], []  # sequences to score, their request, how many tokens of each count
        for r, (_, context, continuation) in enumerate(requests):
            if not continuation:
                raise TinyGPTError("the harness asked for the likelihood of an empty continuation")
            whole = context + continuation
            for end in range(len(whole), len(context), -self.block_size):
                n = min(self.block_size, end - len(context))
                windows.append(whole[max(0, end - self.block_size - 1):end])
                owner.append(r)
                counts.append(n)
        totals, greedy = [0.0] * len(requests), [True] * len(requests)
        bar = tqdm(total=len(windows), disable=disable_tqdm or len(windows) < CHUNK, desc="scoring")
        for start in range(0, len(windows), CHUNK):
            part = slice(start, start + CHUNK)
            for scores, r, n in zip(score(self.model, windows[part], batch_size=self.batch_size), owner[part],
                                    counts[part]):
                totals[r] += sum(scores.logprobs[-n:])
                greedy[r] = greedy[r] and all(scores.greedy[-n:])
            bar.update(len(windows[part]))
        bar.close()
        out = list(zip(totals, greedy))
        for (key, _, _), result in zip(requests, out):
            if cache and key is not None:
                self.cache_hook.add_partial("loglikelihood", key, result)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Each document's log-likelihood over the harness's disjoint windows (every window of every document
        scored in shared batches)."""
        windows, owner, results = [], [], [0.0] * len(requests)
        for i, request in enumerate(requests):
            (text,) = request.args
            try:
                ids = self.tok_encode(text)
            except TinyGPTError:
                results[i] = -math.inf
                self.unencodable += 1
                continue
            for context, continuation in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=ids, prefix_token=self.prefix_token_id, max_seq_len=self.block_size, context_len=1)):
                windows.append((None, context, continuation))
                owner.append(i)
        for i, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm, cache=False)):
            results[i] += logprob
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, result)
        return results

    # ---- generation ---------------------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Each context continued until a stop string (the task's and the end token's) or max_gen_toks."""
        eos = self.tok.token(self.eot_token_id)
        prompts, configs, rows = [], [], []
        results = [""] * len(requests)
        for i, request in enumerate(requests):
            context, kwargs = request.args
            kwargs = dict(kwargs)
            try:
                self.tok_encode(context)
            except TinyGPTError:
                self.unencodable += 1
                continue
            until = handle_stop_sequences(kwargs.pop("until", None), eos)
            sample = kwargs.pop("do_sample", False)
            temperature = float(kwargs.pop("temperature", 1.0 if sample else 0.0)) if sample else 0.0
            config = SamplingConfig(int(kwargs.pop("max_gen_toks", self.max_gen_toks)), temperature,
                                    int(kwargs.pop("top_k", 0) or 0), float(kwargs.pop("top_p", 1.0) or 1.0),
                                    stop=[s for s in until if s]).validate()
            prompts.append(context)
            configs.append(config)
            rows.append(i)
        texts = [""] * len(prompts)
        bar = tqdm(total=len(prompts), disable=disable_tqdm or len(prompts) < 8, desc="generating")
        for start in range(0, len(prompts), self.batch_size):
            part = slice(start, start + self.batch_size)
            for row, piece in complete(self.model, self.tok, prompts[part], configs[part],
                                       [self.seed] * len(prompts[part])):
                texts[start + row] += piece
            bar.update(len(prompts[part]))
        bar.close()
        for i, text, request in zip(rows, texts, (requests[i] for i in rows)):
            results[i] = text
            self.cache_hook.add_partial("generate_until", request.args, text)
        return results


def run_tasks(run, tasks: list[str], include_path: str | None = None, limit: float | None = None,
              num_fewshot: int | None = None, batch_size: int = 16, log=None) -> dict:
    """lm_eval.simple_evaluate on a loaded run: the harness's results (print them with `results_table`).

    tasks: the harness's task (or group) names, standard or from YAML files under include_path.
    limit: at most this many documents per task (a fraction if below 1)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    run.require_text_model("be evaluated by the lm-evaluation-harness")
    manager = None
    if include_path is not None:  # tasks of the user's own only: skip indexing the harness's thousands (~10 s)
        manager = TaskManager(include_path=include_path, include_defaults=False)
        if not all(t in manager.all_tasks for t in tasks):
            manager = None
    manager = manager or TaskManager(include_path=include_path)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise TinyGPTError(unknown_tasks(unknown, manager.all_tasks, include_path))
    lm = TinyGPTLM(run.model, run.tokenizer, batch_size=batch_size, chat=_is_chat(run))
    _quiet_git()
    try:
        results = lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit,
                                          task_manager=manager, batch_size=batch_size, log_samples=False,
                                          random_seed=0, numpy_random_seed=1234, torch_random_seed=1234,
                                          fewshot_random_seed=1234)
    except (ConnectionError, OSError) as e:
        raise TinyGPTError(f"the harness could not read a task's data ({type(e).__name__}: {e}); standard tasks "
                           "download from the Hugging Face Hub, so check the connection, or give tasks of "
                           "your own with --include-path DIR") from None
    if lm.unencodable and log is not None:
        log(f"note: {lm.unencodable:,} requests held text this model's {run.tokenizer.kind} tokenizer cannot encode; "
            "they scored as impossible (log-likelihood -inf, empty generations)")
    return results


def results_table(results: dict) -> str:
    """The harness's own table of the results (and of the groups, when tasks form groups)."""
    from lm_eval.utils import make_table

    table = make_table(results)
    if results.get("groups"):
        table += "\n" + make_table(results, "groups")
    return table


def unknown_tasks(names: list[str], known, include_path: str | None) -> str:
    import difflib

    close = sorted({m for n in names for m in difflib.get_close_matches(n, list(known), n=3)})
    hint = f" (close: {', '.join(close)})" if close else ""
    where = f" or in {include_path}" if include_path else "; give tasks of your own with --include-path DIR"
    return (f"the lm-evaluation-harness has no task {', '.join(map(repr, names))}{hint}: list the standard ones with "
            f"`lm-eval ls tasks`{where}")


def _quiet_git():
    """The harness records which git commit the current folder is at, and lets git print 'fatal: not a git
    repository' where it is none; ask git the same quietly."""
    import subprocess

    import lm_eval.loggers.utils as harness_logs

    def commit() -> str | None:
        try:
            return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).decode().strip()
        except (subprocess.CalledProcessError, OSError):
            return None

    harness_logs.get_git_commit_hash = commit


def _is_chat(run) -> bool:
    from ..store.rundir import RunDir

    return RunDir(run.dir).read_chat_template() is not None
