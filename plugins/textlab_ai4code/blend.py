"""Blends of trained ai4code runs: a weighted mean of where each run puts every markdown cell.

Every model places a markdown cell on the scale of the code cells (`OrderModel.keys_one`: code
cell k at k + 0.5), so positions of a ranker, a neural model and a transformer can be averaged.
The weights (on a grid over the simplex, summing to 1) are the ones with the best pooled Kendall
tau on the validation notebooks of the members' split. Since that score is measured on the
notebooks the weights were chosen on, the fit also logs `crossfit_kendall_tau`: the weights
chosen on one half of the validation notebooks (by ancestor), scored on the other, both ways.

The checkpoint holds the members' checkpoint paths with their sha256, and the weights: a member
that was moved or changed is refused in one line when the blend is used.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import textlab

from . import features as F
from .config import MONITOR, TASK, BlendConfig, TrainOptions
from .data import Notebook
from .model import OrderModel

GRID = {2: 20, 3: 10}  # grid steps per unit weight by member count (5 beyond)
MAX_MEMBERS = 8
ON_DEVICE = ("neural", "transformer")  # the others predict with numpy on the CPU


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ============================================================================ the model
def load_member(ref: dict, device: Any) -> OrderModel:
    """A member's model, if its checkpoint is where and what it was when the blend was fitted."""
    path = Path(ref["path"])
    if not path.is_file():
        raise textlab.CheckpointError(f"blend member {path} is missing (moved or deleted)",
                                      hint="put the run back where it was, or fit the blend again")
    if sha256(path) != ref["sha256"]:
        raise textlab.CheckpointError(f"blend member {path} changed since the blend was fitted (its sha256 differs)",
                                      hint="fit the blend again")
    artifact = textlab.open_artifact(path)
    return artifact.build_model(device if artifact.model_name in ON_DEVICE else "cpu")


class Blend(OrderModel):
    """Weighted mean of the members' markdown positions (members are loaded when first used)."""

    def __init__(self, config: BlendConfig, vocab: Any = None):
        import torch

        super().__init__()
        self.config = config
        self.register_buffer("weights", torch.zeros(len(config.members), dtype=torch.float64))
        self._members: list[OrderModel] | None = None
        self.cache: dict[str, list[np.ndarray]] = {}  # notebook id -> the members' keys (while fitting)

    def members(self) -> list[OrderModel]:
        if self._members is None:
            self._members = [load_member(ref, self.weights.device) for ref in self.config.members]
        return self._members

    def member_keys(self, nb: Notebook) -> list[np.ndarray]:
        if nb.id in self.cache:
            return self.cache[nb.id]
        return [m.keys_one(nb) for m in self.members()]

    def keys_one(self, nb: Notebook) -> np.ndarray:
        return blend_keys(self.member_keys(nb), self.weights.cpu().numpy())


def blend_keys(keys: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return sum(float(w) * np.asarray(k, dtype=np.float64) for w, k in zip(weights, keys))


# ============================================================================ members (checked in resolve)
def open_member(name: str) -> textlab.Artifact:
    try:
        return textlab.open_artifact(name, which="best")
    except textlab.TextlabError as exc:
        raise textlab.UsageError(f"--member {name}: {exc.line() if hasattr(exc, 'line') else exc}") from None


def check_members(opts: TrainOptions) -> None:
    """Two or more ai4code runs with a fitted model, trained on --data with the same split."""
    if len(opts.members) < 2:
        raise textlab.UsageError("--model blend needs two or more --member RUN", hint="--member RUN1 --member RUN2")
    if len(opts.members) > MAX_MEMBERS:
        raise textlab.UsageError(f"--model blend takes at most {MAX_MEMBERS} members, not {len(opts.members)}")
    if opts.valid_share == 0:
        raise textlab.UsageError("a blend fits its weights on validation notebooks; --valid-share 0 leaves none")
    data = textlab.resolve(TASK, opts.data).reference()
    seen = set()
    for name in opts.members:
        art = open_member(name)
        if art.task != TASK:
            raise textlab.UsageError(f"--member {name} is a {art.task} run, not an ai4code run")
        if art.model_name == "blend":
            raise textlab.UsageError(f"--member {name} is a blend; blend the runs it blends instead")
        if art.extra.get("fitted") is False:
            raise textlab.UsageError(f"--member {name} holds no fitted model (its fit was interrupted)")
        if art.path.resolve() in seen:
            raise textlab.UsageError(f"--member {name} is given twice")
        seen.add(art.path.resolve())
        ex = art.extra
        if not textlab.same_data(ex.get("data"), data):
            raise textlab.DataError(f"--member {name} was trained on {ex.get('data')}, not on --data {opts.data}",
                                    hint="blend runs trained on the same data, and pass that --data")
        theirs = {k: ex.get(k) for k in ("valid_share", "split_seed", "limit")}
        ours = {"valid_share": opts.valid_share, "split_seed": opts.split_seed, "limit": opts.limit}
        if any(theirs[k] != ours[k] and not (k == "limit" and not theirs[k] and not ours[k]) for k in ours):
            said = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in theirs.items() if v is not None)
            raise textlab.DataError(f"--member {name} was trained on another split of {opts.data} ({said})",
                                    hint="blend runs of the same split, and pass the same split options")


def member_ref(name: str) -> dict:
    art = open_member(name)
    return {"path": str(art.path.resolve()), "sha256": sha256(art.path), "model": art.model_name,
            "run": str(art.run_dir.resolve()) if art.run_dir else None}


# ============================================================================ the weights
def simplex(n: int, steps: int) -> list[np.ndarray]:
    """Every weight vector of `n` members in multiples of 1/steps that sums to 1."""
    out = []
    for cut in itertools.combinations(range(steps + n - 1), n - 1):
        parts = np.diff(np.concatenate([[-1], cut, [steps + n - 1]])) - 1
        out.append(parts / steps)
    return out


def pooled_tau(notebooks: Sequence[Notebook], keys: Sequence[list[np.ndarray]], weights: np.ndarray) -> float:
    from .evaluate import evaluate_orders, overall

    orders = [F.order_from_keys(nb, blend_keys(k, weights)) if nb.markdown and nb.code else list(nb.cell_ids)
              for nb, k in zip(notebooks, keys)]
    return overall(evaluate_orders(notebooks, orders)[0])["kendall_tau"]


def fit_weights(notebooks: Sequence[Notebook], keys: Sequence[list[np.ndarray]], n: int) -> tuple[np.ndarray, float]:
    """The grid point with the best pooled Kendall tau (the first of equals)."""
    best, best_tau = None, -2.0
    for w in simplex(n, GRID.get(n, 5)):
        tau = pooled_tau(notebooks, keys, w)
        if tau > best_tau + 1e-12:
            best, best_tau = w, tau
    return best, best_tau


def crossfit_tau(notebooks: list[Notebook], keys: list, n: int, seed: int) -> float | None:
    """Weights fitted on one half of the notebooks (by ancestor) scored on the other, both ways, pooled."""
    from .evaluate import evaluate_orders, overall
    from .rankfit import group_folds

    halves = group_folds(notebooks, 2, seed)
    if len(set(halves.tolist())) < 2:
        return None
    orders = [None] * len(notebooks)
    for h in (0, 1):
        fit = [i for i in range(len(notebooks)) if halves[i] != h]
        w, _ = fit_weights([notebooks[i] for i in fit], [keys[i] for i in fit], n)
        for i in np.flatnonzero(halves == h):
            nb = notebooks[i]
            orders[i] = F.order_from_keys(nb, blend_keys(keys[i], w)) if nb.markdown and nb.code else list(nb.cell_ids)
    return overall(evaluate_orders(notebooks, orders)[0])["kendall_tau"]


# ============================================================================ training (fitted mode)
def train_blend(run: textlab.Run, opts: TrainOptions, valid: Sequence[Notebook], extra: dict) -> dict:
    """Fit the weights of the members on the validation notebooks (the engine's fitted mode)."""
    refs = [member_ref(name) for name in opts.members]
    config = BlendConfig(members=refs)
    valid = list(valid)
    seen: dict = {}

    def fit(should_stop):
        import torch

        model = Blend(config)
        model.to(run.device)
        keys = []
        with textlab.progress(len(valid), f"predict with {len(refs)} members", unit="nb") as bar, torch.no_grad():
            for nb in valid:
                keys.append(model.member_keys(nb) if nb.markdown and nb.code else [np.zeros(0)] * len(refs))
                bar.advance(1)
                if should_stop():
                    return None
        weights, tau = fit_weights(valid, keys, len(refs))
        cross = crossfit_tau(valid, keys, len(refs), run.seed)
        model.weights.copy_(torch.from_numpy(weights))
        model.cache = {nb.id: k for nb, k in zip(valid, keys)}
        seen.update(weights=[round(float(w), 4) for w in weights], crossfit=cross)
        textlab.status("blend weights: " + ", ".join(f"{r['model']} {w:.2f}" for r, w in zip(refs, weights))
                       + f" (valid Kendall tau {tau:.4f}" + (f"; weights fitted on the other half: {cross:.4f})"
                                                             if cross is not None else ")"))
        metrics = {f"weight_{i}": float(w) for i, w in enumerate(weights)}
        return textlab.Fitted(model, None, metrics | ({"crossfit_kendall_tau": cross} if cross is not None else {}))

    def evaluate(model) -> dict:
        from .evaluate import evaluate_orders, overall

        t = time.perf_counter()
        metrics = overall(evaluate_orders(valid, model.order(valid, desc="validate"))[0])
        return {**metrics, "predict_time": time.perf_counter() - t}

    result = textlab.Engine(run, fit=fit, evaluate=evaluate, monitor=MONITOR,
                            meta={"model": "blend", "config": config, "extra": extra}).fit()
    if not seen:
        return {"resumed": True, "valid_kendall_tau": result.best}
    run.update(blend={"members": refs, "weights": seen["weights"], "crossfit_kendall_tau": seen["crossfit"]})
    return {"valid_kendall_tau": result.best, "weights": seen["weights"], "crossfit_kendall_tau": seen["crossfit"]}
