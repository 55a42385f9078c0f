"""Notebooks in the Kaggle "Google AI4Code" layout: read them, split them, make them.

The layout (what Kaggle shipped and what `prep --from-notebooks` writes)::

    DIR/train/<id>.json        {"cell_type": {cell_id: "code"|"markdown"}, "source": {cell_id: text}}
                               code cells first in their true order, then the markdown shuffled
    DIR/train_orders.csv       id,cell_order   (the true order, space-separated cell ids)
    DIR/train_ancestors.csv    id,ancestor_id,parent_id   (fork groups: validation splits group by them)

`DIR/test/` (+ optional `test_orders.csv`) is read the same way; a folder that holds the `.json`
files directly works too. Everything here is plain Python (no torch).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import textlab

TASK = "ai4code"
CODE, MARKDOWN = "code", "markdown"


@dataclass
class Notebook:
    """One notebook: cells in JSON order (code in order, markdown after) and, if known, the true order."""

    id: str
    cell_ids: list[str]
    cell_types: list[str]
    sources: list[str]
    order: list[str] | None = None
    ancestor: str | None = None
    _index: dict = field(default=None, repr=False, compare=False)

    @property
    def code(self) -> list[int]:
        """Indices (into cell_ids) of the code cells, in their true relative order."""
        return [i for i, t in enumerate(self.cell_types) if t == CODE]

    @property
    def markdown(self) -> list[int]:
        return [i for i, t in enumerate(self.cell_types) if t == MARKDOWN]

    def __len__(self) -> int:
        return len(self.cell_ids)

    def index(self, cell_id: str) -> int:
        if self._index is None:
            self._index = {c: i for i, c in enumerate(self.cell_ids)}
        return self._index[cell_id]

    def gaps(self) -> dict[str, int]:
        """True gap of each markdown cell: how many code cells precede it in the true order."""
        if self.order is None:
            raise textlab.DataError(f"notebook {self.id} has no known order")
        out, seen = {}, 0
        for c in self.order:
            if self.cell_types[self.index(c)] == CODE:
                seen += 1
            else:
                out[c] = seen
        return out


# ============================================================================ reading
def find_cells_dir(path: Path, prefer: str = "train") -> tuple[Path, Path | None, Path | None]:
    """(folder of .json notebooks, orders csv or None, ancestors csv or None) for a data folder."""
    path = Path(path).expanduser()
    if not path.exists():
        raise textlab.DataError(f"no such folder: {path}")
    if not path.is_dir():
        raise textlab.DataError(f"{path} is not a folder",
                                hint="pass a folder in Kaggle layout (train/<id>.json + train_orders.csv)")
    order = ("train", "test") if prefer == "train" else ("test", "train")
    for name in order:
        sub = path / name
        if sub.is_dir() and any(sub.glob("*.json")):
            return sub, _existing(path / f"{name}_orders.csv"), _existing(path / f"{name}_ancestors.csv")
    if any(path.glob("*.json")):
        orders = _existing(path / "orders.csv") or _existing(path / "train_orders.csv") or \
            _existing(path.parent / f"{path.name}_orders.csv")
        ancestors = _existing(path / "ancestors.csv") or _existing(path / "train_ancestors.csv") or \
            _existing(path.parent / f"{path.name}_ancestors.csv")
        return path, orders, ancestors
    if any(path.rglob("*.ipynb")):
        raise textlab.DataError(f"{path} holds .ipynb notebooks, not the Kaggle layout",
                                hint=f"convert them first: textlab prep ai4code --from-notebooks {path} --out data/nb")
    raise textlab.DataError(f"no notebooks in {path}",
                            hint="expected train/<id>.json (or test/<id>.json) and train_orders.csv")


def _existing(p: Path) -> Path | None:
    return p if p.is_file() else None


def read_csv_rows(path: Path, columns: Iterable[str]) -> list[dict]:
    """Rows of a small CSV as dicts; a missing column or unreadable file is one DataError."""
    columns = list(columns)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise textlab.DataError(f"{path} has no column {missing[0]!r}",
                                        hint=f"its columns: {', '.join(header) or '(none)'}")
            return list(reader)
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise textlab.DataError(f"cannot read {path}: {exc}") from None


def read_orders(path: Path) -> dict[str, list[str]]:
    return {r["id"]: (r["cell_order"] or "").split() for r in read_csv_rows(path, ("id", "cell_order"))}


def read_ancestors(path: Path) -> dict[str, str]:
    return {r["id"]: r["ancestor_id"] for r in read_csv_rows(path, ("id", "ancestor_id"))}


def parse_notebook_json(nb_id: str, obj: object, where: str) -> Notebook:
    """A Kaggle-layout notebook from its parsed JSON; anything malformed is a DataError naming `where`."""
    if not isinstance(obj, dict) or not isinstance(obj.get("cell_type"), dict) or not isinstance(obj.get("source"), dict):
        raise textlab.DataError(f"{where} is not a notebook in Kaggle layout",
                                hint='expected {"cell_type": {id: "code"|"markdown"}, "source": {id: text}}')
    types, sources = obj["cell_type"], obj["source"]
    if set(types) != set(sources):
        raise textlab.DataError(f"{where}: cell_type and source name different cells")
    ids = list(types)
    bad = next((t for t in types.values() if t not in (CODE, MARKDOWN)), None)
    if bad is not None:
        raise textlab.DataError(f"{where}: unknown cell type {bad!r} (expected 'code' or 'markdown')")
    return Notebook(nb_id, ids, [types[c] for c in ids], ["" if sources[c] is None else str(sources[c]) for c in ids])


def load_notebooks(path: str | Path, *, need_orders: bool = True, prefer: str = "train",
                   limit: int | None = None, lazy: bool = False) -> "list[Notebook] | NotebookFiles":
    """Every notebook of a data folder (sorted by id), with its true order and ancestor when known.

    `lazy`: a `NotebookFiles` that keeps only ids, orders, ancestors and cell counts in memory and
    reads a notebook's cells from its file when it is used (every file is read and checked once here).
    """
    cells_dir, orders_path, anc_path = find_cells_dir(Path(path), prefer)
    if need_orders and orders_path is None:
        raise textlab.DataError(f"no orders file for {cells_dir} (train_orders.csv: id,cell_order)",
                                hint="eval needs the true order; generate does not")
    orders = read_orders(orders_path) if orders_path else {}
    ancestors = read_ancestors(anc_path) if anc_path else {}
    files = sorted(cells_dir.glob("*.json"))[:limit] if limit else sorted(cells_dir.glob("*.json"))
    out: list = []
    with textlab.progress(len(files), f"read {cells_dir.name}/", unit="nb") as bar:
        for f in files:
            nb = read_notebook_file(f)
            if orders:
                order = orders.get(nb.id)
                if order is None:
                    if need_orders:
                        raise textlab.DataError(f"{orders_path} has no order for notebook {nb.id}")
                elif sorted(order) != sorted(nb.cell_ids):
                    raise textlab.DataError(f"{orders_path}: the order of {nb.id} does not list exactly its cells")
                nb.order = order
            nb.ancestor = ancestors.get(nb.id) or nb.id
            if lazy:
                n_code = nb.cell_types.count(CODE)
                nb = (str(f), nb.id, nb.ancestor, " ".join(nb.order) if nb.order is not None else None,
                      n_code, len(nb.cell_types) - n_code)
            out.append(nb)
            bar.advance(1)
    if not out:
        raise textlab.DataError(f"no notebooks in {cells_dir}")
    return NotebookFiles(out) if lazy else out


def read_notebook_file(f: Path) -> Notebook:
    try:
        obj = json.loads(Path(f).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise textlab.DataError(f"{f} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise textlab.DataError(f"cannot read {f}: {exc}") from None
    return parse_notebook_json(Path(f).stem, obj, str(f))


class NotebookFiles(abc.Sequence):
    """Notebooks read from their files when used (a list of them would hold every cell's text:
    about 30 KB per notebook). Entries: (path, id, ancestor, order joined by spaces, code cells,
    markdown cells). Slices and `take` give NotebookFiles again."""

    def __init__(self, entries: list[tuple]):
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return NotebookFiles(self.entries[i])
        path, nb_id, ancestor, order, _, _ = self.entries[i]
        nb = read_notebook_file(Path(path))
        nb.ancestor, nb.order = ancestor, (order.split() if order is not None else None)
        return nb

    def __add__(self, other: "NotebookFiles") -> "NotebookFiles":
        return NotebookFiles(self.entries + list(other.entries))

    def take(self, indices: Iterable[int]) -> "NotebookFiles":
        return NotebookFiles([self.entries[i] for i in indices])


def ancestors(notebooks: Sequence) -> list[str]:
    """The ancestor group of each notebook (without reading the files of NotebookFiles)."""
    if isinstance(notebooks, NotebookFiles):
        return [e[2] or e[1] for e in notebooks.entries]
    return [nb.ancestor or nb.id for nb in notebooks]


def cell_counts(notebooks: Sequence) -> tuple[list[int], list[int]]:
    """(code cells, markdown cells) of each notebook (without reading the files of NotebookFiles)."""
    if isinstance(notebooks, NotebookFiles):
        return [e[4] for e in notebooks.entries], [e[5] for e in notebooks.entries]
    return [len(nb.code) for nb in notebooks], [len(nb.markdown) for nb in notebooks]


def take(notebooks: Sequence, indices: Iterable[int]):
    """The notebooks at `indices`, of the same kind (a list, or NotebookFiles)."""
    if isinstance(notebooks, NotebookFiles):
        return notebooks.take(indices)
    return [notebooks[i] for i in indices]


def load_data(data: str, split: str = "train", *, need_orders: bool = True, prefer: str = "train",
              lazy: bool = False) -> "list[Notebook] | NotebookFiles":
    """What `--data` names: the embedded `sample` (one of its splits) or a folder in Kaggle layout."""
    source = textlab.resolve(TASK, data)
    if source.kind == "registered":
        return load_notebooks(source.spec.load(split), need_orders=need_orders, prefer=prefer)  # small: in memory
    if source.kind == "hub":
        raise textlab.DataError(f"no such folder: {data}",
                                hint="ai4code reads local folders in Kaggle layout, or --data sample")
    return load_notebooks(source.path, need_orders=need_orders, prefer=prefer, lazy=lazy)


# ============================================================================ splitting
def grouped_split(notebooks: Sequence, valid_share: float = 0.2, seed: int = 42) -> tuple:
    """(train, valid): whole ancestor groups go to one side; the groups are shuffled with `seed`.

    Groups are taken in a seeded random order and moved to validation until it holds
    `valid_share` of the notebooks, so no fork family is on both sides. A list gives lists,
    NotebookFiles gives NotebookFiles.
    """
    if not 0.0 <= valid_share < 1.0:
        raise textlab.UsageError(f"--valid-share must be in [0, 1), not {valid_share}")
    if valid_share == 0:
        return notebooks if isinstance(notebooks, NotebookFiles) else list(notebooks), []
    group_of = ancestors(notebooks)
    sizes: dict[str, int] = {}
    for g in group_of:
        sizes[g] = sizes.get(g, 0) + 1
    keys = sorted(sizes)
    random.Random(seed).shuffle(keys)
    target = valid_share * len(notebooks)
    valid_keys, n = set(), 0
    for k in keys:
        if n >= target:
            break
        valid_keys.add(k)
        n += sizes[k]
    train = take(notebooks, [i for i, g in enumerate(group_of) if g not in valid_keys])
    valid = take(notebooks, [i for i, g in enumerate(group_of) if g in valid_keys])
    if not len(train) or not len(valid):
        raise textlab.DataError(f"{len(notebooks)} notebooks in {len(sizes)} ancestor groups are too few to split "
                                f"{1 - valid_share:.0%}/{valid_share:.0%}", hint="pass more notebooks or --valid-share 0")
    return train, valid


def train_valid_split(data: str, valid_share: float | None, split_seed: int | None,
                      limit: int) -> tuple[Sequence[Notebook], Sequence[Notebook], str]:
    """(train, valid, how the split was made: for the status line) of what `train` reads: the
    sample's own splits, or a folder split by ancestor; the first `limit` (and limit / 4) of them.
    A folder's notebooks are NotebookFiles (read when used), so that memory does not grow with them."""
    source = textlab.resolve(TASK, data)
    if source.kind == "registered":
        train, valid = load_data(data, "train"), load_data(data, "valid")
        how = f"the {data}'s own train/valid splits"
    else:
        train, valid = grouped_split(load_data(data, "train", lazy=True), valid_share, split_seed)
        how = (f"{valid_share:.0%} grouped by ancestor, split seed {split_seed}" if valid
               else "--valid-share 0: no validation")
    if limit:
        train, valid = train[:limit], valid[: max(1, limit // 4)] if valid else valid
        how += f"; --limit {limit}"
    return train, valid, how


# ============================================================================ writing the layout
def write_layout(out: Path, notebooks: list[Notebook], folder: str = "train") -> None:
    """Write notebooks in Kaggle layout: <folder>/<id>.json (code in order, markdown shuffled), orders, ancestors."""
    cells = out / folder
    cells.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        with textlab.atomic_write(cells / f"{nb.id}.json", encoding="utf-8") as fh:
            json.dump({"cell_type": dict(zip(nb.cell_ids, nb.cell_types)),
                       "source": dict(zip(nb.cell_ids, nb.sources))}, fh, ensure_ascii=False)
    with textlab.atomic_write(out / f"{folder}_orders.csv", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "cell_order"])
        for nb in notebooks:
            w.writerow([nb.id, " ".join(nb.order or [])])
    with textlab.atomic_write(out / f"{folder}_ancestors.csv", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "ancestor_id", "parent_id"])
        for nb in notebooks:
            w.writerow([nb.id, nb.ancestor or nb.id[:8], ""])


def kaggle_notebook(nb_id: str, cells: list[tuple[str, str]], ancestor: str | None = None) -> Notebook:
    """A Notebook in Kaggle form from its cells in true order: stable ids, markdown shuffled after the code.

    Cell ids are 8 hex chars derived from the notebook id and the cell's position (stable from
    one run to the next, but they carry no order a model could read); the markdown is shuffled
    with a generator seeded by the notebook id.
    """
    ids, used = [], set()
    for i in range(len(cells)):
        k = 0
        while True:
            cid = hashlib.sha256(f"{nb_id}:{i}:{k}".encode()).hexdigest()[:8]
            if cid not in used:
                break
            k += 1
        used.add(cid)
        ids.append(cid)
    code = [(c, s) for c, (t, s) in zip(ids, cells) if t == CODE]
    md = [(c, s) for c, (t, s) in zip(ids, cells) if t == MARKDOWN]
    random.Random(int(nb_id, 16) if re.fullmatch(r"[0-9a-f]+", nb_id) else nb_id).shuffle(md)
    both = code + md
    return Notebook(nb_id, [c for c, _ in both], [CODE] * len(code) + [MARKDOWN] * len(md), [s for _, s in both],
                    order=ids, ancestor=ancestor or nb_id[:8])
