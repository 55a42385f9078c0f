"""Scoring a checkpoint: predictions, accuracy, per-class precision / recall / F1, the confusion matrix.

    preds, loss = predict(net, encoded, max_len=64)
    report = evaluate_artifact(artifact, EvalOptions(split="test"))

The data is the run's own unless `--data` names other data (`Artifact.data_source`), tokenized with
the run's own tokenizer (its checkpoint says which; builtin for checkpoints that do not).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import textlab

from . import data as D
from .config import EvalOptions


def predict(net: Any, enc: D.Encoded, *, max_len: int, batch_size: int = 512, device: Any = "cpu",
            bags: Any = None) -> tuple[Any, float]:
    """Predicted classes for every row of `enc` (in order) and the mean cross-entropy.

    A model with a `bags` method (bow) reads the rows hashed into bags (`bags`, or made here).
    """
    import torch

    if bags is None and hasattr(net, "bags"):
        bags = net.bags(enc.ids, enc.offsets, max_len)
    order = torch.sort(enc.lengths, stable=True).indices
    preds = torch.empty(len(enc), dtype=torch.int64)
    loss = 0.0
    with torch.no_grad():
        for rows in torch.split(order, batch_size):
            if bags is not None:
                ids, starts = bags.take(rows)
                logits = net(bags=(ids.to(device), starts.to(device))).float()
            else:
                tokens, lengths = enc.batch(rows, max_len)
                logits = net(tokens.to(device), lengths.to(device)).float()
            y = enc.labels[rows].to(device)
            loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            preds[rows] = logits.argmax(1).cpu()
    return preds, loss / max(1, len(enc))


def rows_to_score(artifact: textlab.Artifact, vocab: textlab.Vocab, data: str | None, split: str) -> tuple[Any, str]:
    """The encoded rows of `split` (the full test split; valid and train carved from train as the run
    did) of `data` (default: the run's own), and the data's reference."""
    from .train import subset

    extra = artifact.extra
    data, own = artifact.data_source(data)
    source = D.resolve(data)
    tokenizer = str(extra.get("tokenizer") or "builtin")
    if split == "test":
        if D.one_file(source):  # one file is a train split to train and vocab; to eval --data, the rows to score
            if own:
                raise textlab.DataError(f"{source.path} is the one file this run was trained on, so it has no test split",
                                        hint="pass the test rows with --data TEST_FILE, or a folder with train and test files")
            return D.encode(D.prepare(source, "train", tokenizer=tokenizer), vocab), data  # all the file's rows
        return D.encode(D.prepare(source, "test", tokenizer=tokenizer), vocab), data
    prep = D.prepare(source, "train", tokenizer=tokenizer)
    train_idx, valid_idx = D.split_valid(prep.labels, float(extra.get("valid_fraction", 0.05)),
                                         int(extra.get("split_seed", D.SPLIT_SEED)))
    return subset(D.encode(prep, vocab), valid_idx if split == "valid" else train_idx), data


def evaluate_artifact(artifact: textlab.Artifact, opts: EvalOptions | None = None) -> dict:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix of a checkpoint on a split;
    written to the run's eval/ folder (<split>.json and confusion_<split>.png)."""
    opts = opts or EvalOptions()
    if artifact.task != "agnews":
        raise textlab.CheckpointError(f"{artifact.path} is a checkpoint of task {artifact.task!r}, not agnews")
    extra = artifact.extra
    net = artifact.build_model()
    if not isinstance(artifact.vocab, dict):
        raise textlab.CheckpointError(f"{artifact.path} holds no vocabulary")
    vocab = textlab.Vocab.from_dict(artifact.vocab)
    enc, data = rows_to_score(artifact, vocab, opts.data, opts.split)
    t0 = time.perf_counter()
    preds, loss = predict(net, enc, max_len=int(extra.get("max_len", 64)), batch_size=opts.batch_size,
                          device=artifact.device)
    seconds = time.perf_counter() - t0
    report = classification_report(preds, enc.labels, list(extra.get("classes") or D.CLASSES))
    report.update(split=opts.split, data=str(data), loss=loss, rows=len(enc), seconds=round(seconds, 3),
                  checkpoint=str(artifact.path), model=artifact.model_name, name=model_label(artifact))
    out = artifact.output_dir("eval", data=data)
    # a run's best.pt writes <split>.json; any other of its checkpoints (last.pt) <split>-last.json beside it
    other = artifact.run_dir is not None and artifact.path.stem != "best"
    stem = f"{opts.split}-{artifact.path.stem}" if other else opts.split
    if other:
        report["name"] += f" ({artifact.path.name})"
    report["png"] = str(plot_confusion(report, out / f"confusion_{stem}.png"))
    textlab.write_json(out / f"{stem}.json", report)
    report["json"] = str(out / f"{stem}.json")
    return report


def model_label(artifact: textlab.Artifact) -> str:
    """What a report calls the model: the recurrent cell of an rnn (lstm, gru, rnn), else the model's name."""
    cell = artifact.config.get("rnn") if artifact.model_name == "rnn" else None
    return str(cell) if cell else artifact.model_name


def classification_report(preds: Any, labels: Any, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro F1 and the confusion matrix (rows: true)."""
    import torch

    k = len(classes)
    cm = torch.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    per_class = []
    for i, name in enumerate(classes):
        tp = int(cm[i, i])
        predicted, support = int(cm[:, i].sum()), int(cm[i].sum())
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class.append({"class": name, "precision": p, "recall": r, "f1": f1, "support": support})
    return {"accuracy": float(cm.diag().sum()) / max(1, int(cm.sum())),
            "macro_f1": sum(c["f1"] for c in per_class) / k,
            "per_class": per_class, "confusion": cm.tolist(), "classes": classes}


def show_report(report: dict) -> None:
    """The report as two tables (per class; the confusion matrix) and where its files are."""
    from rich.table import Table

    t = Table(title=f"agnews {report['name']} on {report['split']} ({report['rows']:,} rows): accuracy "
                    f"{report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}")
    for col in ("class", "precision", "recall", "F1", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for c in report["per_class"]:
        t.add_row(c["class"], f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", f"{c['support']:,}")
    cm = Table(title="confusion matrix (rows: true class, columns: predicted)")
    cm.add_column("true \\ predicted")
    for name in report["classes"]:
        cm.add_column(name, justify="right")
    for name, row in zip(report["classes"], report["confusion"]):
        cm.add_row(name, *(f"{v:,}" for v in row))
    textlab.show(t, cm)
    textlab.status(f"wrote {report['json']} and {report['png']}")


def plot_confusion(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm, classes = report["confusion"], report["classes"]
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(cm, cmap="Blues")
    top = max(max(row) for row in cm) or 1
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:,}", ha="center", va="center", color="white" if v > top / 2 else "black", fontsize=9)
    ax.set_xticks(range(len(classes)), classes, rotation=20)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{report.get('name') or report.get('model', '')} on {report.get('split', '')}: "
                 f"accuracy {report['accuracy']:.4f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
