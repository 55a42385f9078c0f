"""word2vec as an embedder: in-domain vectors for another task's run (`textlab_embedders`).

A task such as agnews hands over its training text (one document per line) and a folder inside its
run; this writes, under that folder, the prepared corpus, the vocabulary, a word2vec run
(`run/`, with its checkpoint: `textlab neighbors <folder>/run` works on it) and `vectors.txt` in
the word2vec text format. Nothing here changes the user's own word2vec steps ("the corpus of
the last step you ran").

The settings suit a task's corpus of a few million tokens, not a web-scale one: words seen twice
or more, five epochs (a small corpus needs several passes), window 5, 5 negatives, subsampling
1e-3. On the AG News train part (71k rows, 2.4M tokens) this takes 13-22 s on 2 cores, and a
bidirectional GRU started from these 128-d vectors and trained 3 epochs scores 0.920-0.923 test
accuracy against 0.912-0.915 from random embeddings (plugins/textlab_agnews/README.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import textlab

from . import data as D

MIN_COUNT = 2
EPOCHS = 5


def train_vectors(text: str | Path, out_dir: str | Path, *, dim: int, seed: int = 0, device: str = "cpu") -> dict:
    """Learn `dim`-sized SGNS vectors from `text`; returns {"vectors": path, "words", "seconds", "run"}."""
    import torch

    from .evaluate import Vectors, export
    from .train import Settings, Trainer, checkpoint_meta

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    prepared, _ = D.prep(str(text), out=out_dir / "prep", latest=False)
    vocab_step, _ = D.build_vocab(prepared, min_count=MIN_COUNT, out=out_dir / "vocab", latest=False)
    corpus = D.open_corpus(vocab_step)  # build_vocab has refused a text with no word seen MIN_COUNT times
    backend = "numba" if str(device) == "cpu" else "torch"
    opts = Settings(dim=dim, epochs=EPOCHS, backend=backend, workers=torch.get_num_threads(), save_every=0.0)
    meta = checkpoint_meta(corpus, vocab_step, None, opts)
    run = textlab.Run.create("word2vec", f"sgns-{dim}d", {"embedder": "word2vec", "text": str(text), "min_count": MIN_COUNT,
                                                            **meta["extra"]["train"]},
                             seed=seed, device=str(device), path=out_dir / "run")
    trainer = Trainer(run, corpus, opts)
    with run:  # Ctrl-C stops the vectors (and then the task that asked for them)
        summary = trainer.fit(meta)
        if summary["stopped"] != "done":
            raise KeyboardInterrupt
        run.set_best("train/loss", summary["loss"], trainer.state["work"])
    payload = trainer.payload(meta)
    vectors = Vectors(list(corpus.itos), payload["vocab"]["counts"], payload["state_dict"]["in_vectors"])
    written = export(vectors, out_dir / "vectors.txt")
    return {"vectors": written["path"], "words": written["words"], "dim": dim, "tokens": corpus.tokens,
            "loss": summary["loss"], "seconds": round(time.perf_counter() - t0, 2), "run": str(run.dir)}
