"""The models. Each is a `torch.nn.Module` whose state is tensors, with `order(notebooks)`.

* `appended`   code in order, markdown appended (what the JSON files hold).
* `similar`    each markdown cell just before its most TF-IDF-similar code cell.
* `pointwise`  ridge regression of a markdown cell's relative position (word 1-2-gram TF-IDF,
               cell features, similarity to the code cells).
* `ranker`     gradient-boosted trees over (markdown cell, code gap) pair features, in two stages:
               the second sees where the first put the other markdown cells.
* `neural`     hashed-token cell encoder, a GRU over the code cells for context, a score for
               every (markdown cell, gap) pair; trained with the shared loop.

The non-neural models hold their fitted parts as buffers (idf vectors, ridge coefficients, tree
arrays) and their vocabularies in the checkpoint's `vocab`, so every checkpoint loads with
`weights_only=True` and `eval`/`generate` need nothing but the run directory.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

import textlab

from . import features as F
from .config import AppendedConfig, NeuralConfig, PointwiseConfig, RankerConfig, SimilarConfig, TransformerConfig
from .data import Notebook
from .trees import Forest


class OrderModel(nn.Module):
    """A model that puts the cells of notebooks in order: `keys_one(nb)` places each markdown cell
    on the scale of the code cells (code cell k sits at k + 0.5; a key in (j - 0.5, j + 0.5) is
    gap j), which a blend averages; `order_one(nb)` is the order those keys give."""

    def keys_one(self, nb: Notebook) -> np.ndarray:
        raise NotImplementedError

    def order_one(self, nb: Notebook) -> list[str]:
        return F.order_from_keys(nb, self.keys_one(nb))

    def order(self, notebooks: Sequence[Notebook], desc: str = "predict", show: bool = True) -> list[list[str]]:
        """The predicted order (cell ids) of each notebook."""
        out = []
        with torch.no_grad(), textlab.progress(len(notebooks), desc, unit="nb", enabled=None if show else False) as bar:
            for nb in notebooks:
                if not nb.markdown or not nb.code:
                    out.append(list(nb.cell_ids))  # nothing to place
                else:
                    out.append(self.order_one(nb))
                bar.advance(1)
        return out


def _buffer(module: nn.Module, name: str, size: int | tuple, dtype=torch.float32) -> None:
    module.register_buffer(name, torch.zeros(size, dtype=dtype))


def _vocab_list(vocab: Any, key: str, size: int) -> list[str]:
    words = (vocab or {}).get(key) if isinstance(vocab, dict) else None
    if not isinstance(words, list) or len(words) != size:
        raise textlab.CheckpointError(f"the checkpoint's vocabulary {key!r} is missing or has the wrong size")
    return words


# ============================================================================ baselines
class Appended(OrderModel):
    def __init__(self, config: AppendedConfig, vocab: Any = None):
        super().__init__()

    def order_one(self, nb: Notebook) -> list[str]:
        return list(nb.cell_ids)

    def keys_one(self, nb: Notebook) -> np.ndarray:
        return np.full(len(nb.markdown), float(len(nb.code)))  # after the last code cell, in file order


class Similar(OrderModel):
    def __init__(self, config: SimilarConfig, vocab: Any = None):
        super().__init__()
        self.config = config
        self.words = _vocab_list(vocab, "words", config.n_words) if config.n_words else []
        _buffer(self, "idf", config.n_words)

    def tfidf(self) -> F.Tfidf:
        if getattr(self, "_tfidf", None) is None:
            self._tfidf = F.Tfidf(self.words, self.idf.numpy())
        return self._tfidf

    def keys_one(self, nb: Notebook) -> np.ndarray:
        tf = self.tfidf()
        W = F.local_dense([tf.row(F.ident_tokens(s)) for s in nb.sources])
        S = W[nb.markdown] @ W[nb.code].T
        return np.where(S.max(1) > 0, S.argmax(1), 0).astype(np.float64)


# ============================================================================ text-only position prior
class Prior(nn.Module):
    """Ridge regression over word 1-2-gram TF-IDF (plus optional dense features): a relative position."""

    def __init__(self, ngrams: list[str], n_extra: int = 0):
        super().__init__()
        self.ngrams = ngrams
        _buffer(self, "idf", len(ngrams))
        _buffer(self, "coef", len(ngrams))
        _buffer(self, "bias", ())
        _buffer(self, "extra_coef", n_extra)
        _buffer(self, "extra_mean", n_extra)
        _buffer(self, "extra_scale", n_extra)

    def tfidf(self) -> F.Tfidf:
        if getattr(self, "_tfidf", None) is None:
            self._tfidf = F.Tfidf(self.ngrams, self.idf.numpy())
        return self._tfidf

    def predict(self, texts: Sequence[str], extra: np.ndarray | None = None) -> np.ndarray:
        tf, coef = self.tfidf(), self.coef.numpy()
        out = np.empty(len(texts), dtype=np.float64)
        for k, text in enumerate(texts):
            ids, w = tf.row(F.word_ngrams(text))
            out[k] = float(coef[ids] @ w) if len(ids) else 0.0
        out += float(self.bias)
        if extra is not None and len(self.extra_coef):
            z = (extra - self.extra_mean.numpy()) / self.extra_scale.numpy()
            out += z @ self.extra_coef.numpy()
        return out


SIM_SUMMARY = ("best_match_frac", "max_cosine", "weighted_frac", "any_overlap")


def similarity_summary(S: np.ndarray) -> np.ndarray:
    """Per markdown cell: where its best-matching code cell is, how good, and a similarity-weighted position."""
    M, C = S.shape
    pos = (np.arange(C) + 0.5) / C
    best = S.argmax(1)
    w = S.sum(1)
    weighted = np.where(w > 0, (S * pos).sum(1) / np.maximum(w, 1e-9), 0.5)
    return np.stack([np.where(S.max(1) > 0, best / C, 0.0), S.max(1), weighted, (S.max(1) > 0).astype(float)], 1)


class Pointwise(OrderModel):
    def __init__(self, config: PointwiseConfig, vocab: Any = None):
        super().__init__()
        self.config = config
        self.words = _vocab_list(vocab, "words", config.n_words) if config.n_words else []
        ngrams = _vocab_list(vocab, "ngrams", config.n_ngrams) if config.n_ngrams else []
        _buffer(self, "idf", config.n_words)
        self.prior = Prior(ngrams, config.n_extra)

    def extra_features(self, nb: Notebook) -> np.ndarray:
        tf = F.Tfidf(self.words, self.idf.numpy()) if getattr(self, "_tf", None) is None else self._tf
        self._tf = tf
        W = F.local_dense([tf.row(F.ident_tokens(s)) for s in nb.sources])
        S = W[nb.markdown] @ W[nb.code].T
        md = np.array([F.markdown_features(nb.sources[i]) for i in nb.markdown], dtype=np.float64)
        return np.hstack([md, similarity_summary(S)])

    def keys_one(self, nb: Notebook) -> np.ndarray:
        p = self.prior.predict([nb.sources[i] for i in nb.markdown], self.extra_features(nb))
        return np.clip(p, 0.0, 1.0) * len(nb.code)


# ============================================================================ the gap ranker
class Ranker(OrderModel):
    def __init__(self, config: RankerConfig, vocab: Any = None):
        super().__init__()
        self.config = config
        self.words = _vocab_list(vocab, "words", config.n_words) if config.n_words else []
        ngrams = _vocab_list(vocab, "ngrams", config.n_ngrams) if config.n_ngrams else []
        _buffer(self, "words_idf", config.n_words)
        _buffer(self, "chars_idf", config.char_features)
        self.prior = Prior(ngrams)
        for stage in (1, 2):
            nodes, trees = getattr(config, f"stage{stage}_nodes"), getattr(config, f"stage{stage}_trees")
            for name, dt in (("feature", torch.int64), ("threshold", torch.float64), ("left", torch.int64),
                             ("right", torch.int64), ("leaf", torch.bool), ("value", torch.float64)):
                _buffer(self, f"stage{stage}.{name}".replace(".", "_"), nodes, dt)
            _buffer(self, f"stage{stage}_roots", trees, torch.int64)
            _buffer(self, f"stage{stage}_baseline", (), torch.float64)
        self._forests: dict[int, Forest] = {}

    def text_models(self) -> F.TextModels:
        if getattr(self, "_text", None) is None:
            self._text = F.TextModels(F.Tfidf(self.words, self.words_idf.numpy()), F.HashedTfidf(self.chars_idf.numpy()))
        return self._text

    def forest(self, stage: int) -> Forest:
        if stage not in self._forests:
            state = {k.replace(f"stage{stage}_", f"s{stage}."): v for k, v in self.state_dict().items()
                     if k.startswith(f"stage{stage}_")}
            self._forests[stage] = Forest.from_tensors(state, f"s{stage}")
        return self._forests[stage]

    def set_forest(self, stage: int, forest: Forest) -> None:
        """Install fitted trees (training): buffers resized to the forest."""
        for name, tensor in forest.to_tensors(f"stage{stage}").items():
            setattr(self, name.replace(".", "_"), tensor)
        setattr(self.config, f"stage{stage}_nodes", len(forest.feature))
        setattr(self.config, f"stage{stage}_trees", forest.n_trees)
        self._forests[stage] = forest

    def logits(self, view: F.View, prior: np.ndarray) -> np.ndarray:
        X = F.pair_features(view, prior)
        z = self.forest(1).predict(X)
        if self.config.stages >= 2 and self.config.stage2_trees:
            z = self.forest(2).predict(np.hstack([X, F.stage2_features(view, z)]))
        return z

    def keys_one(self, nb: Notebook) -> np.ndarray:
        view = F.View(nb, self.text_models())
        prior = self.prior.predict([nb.sources[i] for i in nb.markdown])
        z = self.logits(view, prior)
        return F.gap_keys(z, view.M, view.C)


# ============================================================================ the neural ranker
def hash_ids(tokens: Sequence[str], buckets: int) -> list[int]:
    """Stable ids for tokens (CRC32; id 0 is padding)."""
    return [1 + zlib.crc32(t.encode("utf-8")) % (buckets - 1) for t in tokens]


class CellTokenizer:
    """Token ids of a cell: hashed identifier tokens (+ hashed subword pieces), or a local HF tokenizer's ids."""

    def __init__(self, config: NeuralConfig, hf_json: str | None = None):
        self.config = config
        self.hf = None
        if hf_json:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise textlab.UsageError("this model uses a Hugging Face tokenizer: install 'tokenizers' "
                                         "(pip install transformers)") from None
            self.hf = Tokenizer.from_str(hf_json)

    def __call__(self, text: str, kind: str) -> list[int]:
        c = self.config
        if self.hf is not None:
            ids = self.hf.encode(F.clean(text)[:4000], add_special_tokens=False).ids[: c.max_tokens]
            return [1 + (i % (c.buckets - 1)) for i in ids] or [0]
        toks = F.ident_tokens(text)[: c.max_tokens]
        toks = [f"{kind[0]}:{t}" if kind == "code" else t for t in toks] + toks
        if c.subwords:
            toks += [f"#{t[i:i + 4]}" for t in set(F.ident_tokens(text)[: c.max_tokens]) if len(t) >= 6
                     for i in range(0, len(t) - 3, 2)]
        return hash_ids(toks[: 2 * c.max_tokens], c.buckets) or [0]


def encode_notebook(nb: Notebook, tok: CellTokenizer) -> dict:
    """A notebook as tensors: token ids of every cell (code in order, then markdown) and the true gaps."""
    cells = nb.code + nb.markdown
    ids = [tok(nb.sources[i], nb.cell_types[i]) for i in cells]
    out = {"ids": torch.tensor([t for x in ids for t in x], dtype=torch.long),
           "offsets": torch.tensor(np.cumsum([0] + [len(x) for x in ids[:-1]]), dtype=torch.long),
           "n_code": len(nb.code), "n_md": len(nb.markdown)}
    if nb.order is not None:
        gaps = nb.gaps()
        out["gaps"] = torch.tensor([gaps[nb.cell_ids[i]] for i in nb.markdown], dtype=torch.long)
    return out


def bucket_idf(encodings: Sequence[dict], buckets: int) -> torch.Tensor:
    """Inverse document frequency of every hash bucket over the cells of the training notebooks."""
    df = torch.zeros(buckets, dtype=torch.float64)
    n = 0
    for e in encodings:
        cells = torch.repeat_interleave(torch.arange(len(e["offsets"])), torch.diff(
            torch.cat([e["offsets"], torch.tensor([len(e["ids"])])])))
        pairs = torch.unique(cells * buckets + e["ids"])
        df += torch.bincount(pairs % buckets, minlength=buckets).double()
        n += len(e["offsets"])
    return (torch.log((1 + n) / (1 + df)) + 1).float()


LEXICAL = 8  # lexical features of a (markdown, gap) pair, computed from the token bags


def lexical_features(ids: torch.Tensor, offsets: torch.Tensor, idf: torch.Tensor, C: int, M: int) -> torch.Tensor:
    """(M, C + 1, LEXICAL): TF-IDF cosine of each markdown cell with the code cells around each gap.

    Built from the same hashed tokens the encoder reads (with a fitted idf per bucket), so the
    network starts from what the "similar" baseline knows and learns the rest.
    """
    n = len(offsets)
    lens = torch.diff(torch.cat([offsets, torch.tensor([len(ids)], device=ids.device)]))
    cells = torch.repeat_interleave(torch.arange(n, device=ids.device), lens)
    local, inv = torch.unique(ids, return_inverse=True)
    tf = torch.zeros(n, len(local), device=ids.device)
    tf.index_put_((cells, inv), torch.ones_like(inv, dtype=tf.dtype), accumulate=True)
    w = torch.where(tf > 0, 1 + torch.log(tf.clamp_min(1)), tf) * idf[local][None, :]
    w = nn.functional.normalize(w, dim=1)
    S = w[C:C + M] @ w[:C].T  # (M, C)
    zero = torch.zeros(M, 1, device=S.device)
    nxt, prv = torch.cat([S, zero], 1), torch.cat([zero, S], 1)
    smax = S.max(1, keepdim=True).values
    colmax = S.max(0, keepdim=True).values + 1e-6
    cn = S / colmax
    nxt_c, prv_c = torch.cat([cn, zero], 1), torch.cat([zero, cn], 1)
    best = (S == smax) & (smax > 0)
    nxt_b, prv_b = torch.cat([best, zero.bool()], 1).float(), torch.cat([zero.bool(), best], 1).float()
    return torch.stack([nxt, prv, nxt - smax, prv - smax, nxt_c, prv_c, nxt_b, prv_b], 2)


class NeuralRanker(OrderModel):
    """Score every (markdown cell, code gap) pair of a notebook.

    Cells -> mean of hashed token embeddings. Code cells -> a bidirectional GRU in their order
    (the code-cell context); gap j is made from the GRU states of code cells j-1 and j. A pair's
    score is a small MLP over: a learned match of the markdown with the gap, a learned position
    prior of the markdown, the gap's position, and TF-IDF similarities of the markdown with the
    code cells on either side (from the same hashed tokens). Trained with cross-entropy over the
    gaps of each markdown cell; decoded like the tree ranker (median gap).
    """

    def __init__(self, config: NeuralConfig, vocab: Any = None):
        super().__init__()
        self.config = config
        d = config.dim
        self.emb = nn.EmbeddingBag(config.buckets, d, mode="mean", padding_idx=0)
        self.register_buffer("idf", torch.ones(config.buckets))
        self.md_proj = nn.Sequential(nn.Linear(d, d), nn.Tanh())
        self.code_proj = nn.Sequential(nn.Linear(d, d), nn.Tanh())
        self.gru = nn.GRU(d + 1, d, batch_first=True, bidirectional=True)
        self.edge = nn.Parameter(torch.zeros(2, 2 * d))
        self.gap = nn.Sequential(nn.Linear(4 * d + 3, 2 * d), nn.Tanh(), nn.Linear(2 * d, d))
        self.match = nn.Linear(d, d, bias=False)
        self.prior = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 8))
        self.pos = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 8))
        self.head = nn.Sequential(nn.Linear(LEXICAL + 5, 32), nn.Tanh(), nn.Linear(32, 1))
        self.drop = nn.Dropout(config.dropout)
        self.hf_json: str | None = vocab.get("hf_tokenizer") if isinstance(vocab, dict) else None
        self._tok = None

    def tokenizer(self) -> CellTokenizer:
        if self._tok is None:
            self._tok = CellTokenizer(self.config, self.hf_json)
        return self._tok

    def forward(self, enc: dict) -> torch.Tensor:
        """Logits (n_md, n_code + 1) of each markdown cell's gap."""
        C, M = enc["n_code"], enc["n_md"]
        if "lexical" not in enc:
            with torch.no_grad():
                enc["lexical"] = lexical_features(enc["ids"], enc["offsets"], self.idf, C, M)
        e = self.drop(self.emb(enc["ids"], enc["offsets"]))
        code, md = self.code_proj(e[:C]), self.md_proj(e[C:C + M])
        frac = torch.arange(C, dtype=code.dtype, device=code.device)[:, None] / max(C, 1)
        h = self.gru(torch.cat([code, frac], 1)[None])[0][0]
        states = torch.cat([self.edge[:1], h, self.edge[1:]], 0)  # start, code cells, end
        j = torch.arange(C + 1, dtype=code.dtype, device=code.device)
        pos = torch.stack([j / max(C, 1), (j == 0).to(code.dtype), (j == C).to(code.dtype)], 1)
        gaps = self.gap(torch.cat([states[:-1], states[1:], pos], 1))  # gap j: between code j-1 and j
        match = self.match(md) @ gaps.T  # (M, C + 1)
        prior = self.prior(md) @ self.pos(pos).T
        feats = torch.cat([enc["lexical"], match[..., None], prior[..., None],
                           pos[None].expand(M, -1, -1)], 2)
        return self.head(feats)[..., 0] + match + prior

    def keys_one(self, nb: Notebook) -> np.ndarray:
        enc = encode_notebook(nb, self.tokenizer())
        dev = next(self.parameters()).device
        enc = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in enc.items()}
        z = self(enc).double().cpu().numpy()
        return F.gap_keys(z, len(nb.markdown), len(nb.code))


# ============================================================================ the transformer ranker
class TransformerRanker(OrderModel):
    """A pretrained encoder reads a markdown cell with a sample of its notebook's code cells
    (`[CLS] markdown [SEP] code [SEP] code [SEP] ...`, each part cut to its token budget) and
    predicts the cell's relative position (the share of code cells before it) from the first
    token's state and the notebook's shape, as the top AI4Code solutions did."""

    def __init__(self, config: TransformerConfig, vocab: Any = None, encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        if encoder is None and config.encoder_config:
            from .hf import build_encoder

            encoder = build_encoder(config.encoder_config)
        self.encoder = encoder
        self.head = nn.Linear(max(config.hidden, 1) + 2, 1)
        self.tokenizer_json = vocab.get("tokenizer") if isinstance(vocab, dict) else None
        if config.encoder_config and not isinstance(self.tokenizer_json, str):
            raise textlab.CheckpointError("the checkpoint's vocabulary holds no tokenizer for its encoder")
        self._tok = None

    def tokenizer(self) -> Any:
        if self._tok is None:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise textlab.UsageError("this model needs the 'tokenizers' package",
                                         hint="pip install 'textlab[hf]'") from None
            self._tok = Tokenizer.from_str(self.tokenizer_json)
        return self._tok

    def forward(self, batch: dict) -> torch.Tensor:
        """The predicted relative position (0..1) of each input."""
        out = self.encoder(input_ids=batch["ids"], attention_mask=batch["mask"])
        first = out.last_hidden_state[:, 0].float()
        return torch.sigmoid(self.head(torch.cat([first, batch["feats"]], 1)))[:, 0]

    def keys_one(self, nb: Notebook, chunk: int = 32) -> np.ndarray:
        from .tformer import encode_cells, make_batch

        enc = encode_cells(nb, self.tokenizer(), self.config)
        dev = self.head.weight.device
        preds = [self(make_batch([(enc, m) for m in range(lo, min(lo + chunk, enc.n))], self.config, dev))
                 .double().cpu().numpy() for lo in range(0, enc.n, chunk)]
        return np.concatenate(preds) * len(nb.code) if preds else np.zeros(0)


# ============================================================================ builders (ModelSpec.build)
def build_appended(config: AppendedConfig, vocab: Any) -> Appended:
    return Appended(config, vocab)


def build_similar(config: SimilarConfig, vocab: Any) -> Similar:
    return Similar(config, vocab)


def build_pointwise(config: PointwiseConfig, vocab: Any) -> Pointwise:
    return Pointwise(config, vocab)


def build_ranker(config: RankerConfig, vocab: Any) -> Ranker:
    return Ranker(config, vocab)


def build_neural(config: NeuralConfig, vocab: Any) -> NeuralRanker:
    return NeuralRanker(config, vocab)


def build_transformer(config: TransformerConfig, vocab: Any) -> TransformerRanker:
    return TransformerRanker(config, vocab)


def build_blend(config: Any, vocab: Any) -> OrderModel:
    from .blend import Blend

    return Blend(config, vocab)
