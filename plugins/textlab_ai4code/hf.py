"""Hugging Face parts, from local folders (offline clusters): a tokenizer for the neural ranker, and
an encoder for the transformer ranker.

Folders are read with `local_files_only=True`: nothing is downloaded unless the user passes
`--hub`. What a checkpoint needs is copied out of the folder (the tokenizer's JSON definition, the
encoder's config as JSON and its weights in the state dict), so `eval` and `generate` never need
the folder again. `transformers` is an extra: `pip install textlab[hf]`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import textlab

HF_HINT = "pip install 'textlab[hf]' (or: pip install transformers)"
# encoder-only architectures: AutoModel gives the encoder, its first token's state summarises the input
ENCODERS = ("albert", "bert", "camembert", "deberta", "deberta-v2", "distilbert", "electra", "modernbert", "mpnet",
            "roberta", "xlm-roberta", "t5")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def have_transformers() -> bool:
    """Whether `transformers` is installed (without importing it: that takes seconds)."""
    import importlib.util

    try:
        return importlib.util.find_spec("transformers") is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken install
        return False


def transformers_module() -> Any:
    """`transformers`, quiet (no progress bars, no advice), or one line saying what to install."""
    try:
        import transformers
    except ImportError:
        raise textlab.UsageError("--model transformer needs the 'transformers' package, which is not installed",
                                 hint=HF_HINT) from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


# ============================================================================ the neural ranker's tokenizer
def load_tokenizer_json(name: str, *, allow_hub: bool = False) -> str:
    """The serialised fast tokenizer (a JSON string) from a local folder, or from the hub if allowed."""
    path = Path(name).expanduser()
    local = path.is_dir()
    if not local and not allow_hub:
        raise textlab.UsageError(f"--tokenizer {name}: no such local folder",
                                 hint="pass a folder holding tokenizer.json / vocab files, or add --hub to download it")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise textlab.UsageError("--tokenizer needs the 'transformers' package, which is not installed",
                                 hint="pip install transformers, or use the default --tokenizer hash") from None
    try:
        tok = AutoTokenizer.from_pretrained(str(path) if local else name, local_files_only=not allow_hub)
    except Exception as exc:  # noqa: BLE001 - offline, missing files, unknown format...
        where = "from the folder" if local else "from the Hugging Face hub (offline?)"
        raise textlab.DataError(f"cannot load a tokenizer {where} {name}: {_first_line(exc)}") from None
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise textlab.UsageError(f"the tokenizer in {name} is not a 'fast' tokenizer; the neural ranker needs one")
    return backend.to_str()


# ============================================================================ the transformer's encoder
def check_encoder_option(encoder: str | None, hub: bool) -> None:
    """What can be told without loading anything (before a run directory exists): a folder that is
    missing or lacks a config, weights or tokenizer files."""
    if not have_transformers():
        raise textlab.UsageError("--model transformer needs the 'transformers' package, which is not installed",
                                 hint=HF_HINT)
    if not encoder:
        raise textlab.UsageError("--model transformer needs --encoder DIR (a local Hugging Face encoder folder)",
                                 hint="e.g. --encoder ~/models/codebert-base (a copy of microsoft/codebert-base)")
    path = Path(encoder).expanduser()
    if not path.exists():
        if hub:
            return  # a hub name: checked when it is downloaded
        raise textlab.UsageError(f"--encoder {encoder}: no such local folder",
                                 hint="pass a folder with config.json, the weights and the tokenizer, or add --hub "
                                      "to download a hub model")
    if not path.is_dir():
        raise textlab.UsageError(f"--encoder {encoder} is a file; pass the folder that holds config.json")
    missing = [what for what, names in (("config.json", ("config.json",)), ("weights (model.safetensors)", WEIGHTS),
                                        ("tokenizer (tokenizer.json)", TOKENIZER_FILES))
               if not any((path / n).is_file() for n in names)]
    if missing:
        raise textlab.DataError(f"--encoder {encoder} is incomplete: no {' and no '.join(missing)}",
                                hint="copy the whole model folder (save_pretrained writes all of them)")


def folder_hashes(path: Path) -> dict[str, str]:
    """sha256 of every file in the folder (relative names), recorded with the run."""
    out = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[str(f.relative_to(path))] = h.hexdigest()
    return out


def _model_class(transformers: Any, model_type: str) -> Any:
    if model_type not in ENCODERS:
        raise textlab.DataError(f"the encoder's architecture {model_type!r} is not one textlab fine-tunes",
                                hint=f"an encoder-only model: {', '.join(ENCODERS)}")
    return transformers.T5EncoderModel if model_type == "t5" else transformers.AutoModel


def load_encoder(name: str, *, hub: bool) -> dict:
    """The encoder, its tokenizer and what a checkpoint keeps of them:
    {"model", "tokenizer_json", "config_json", "hidden", "max_positions", "cls_id", "sep_id", "pad_id",
    "files" (sha256 of the folder's files; {} for a hub name)}. Every failure is one line."""
    transformers = transformers_module()
    path = Path(name).expanduser()
    local = path.is_dir()
    source = str(path) if local else name
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=not hub)
    except Exception as exc:  # noqa: BLE001 - unreadable config, unknown model type, offline...
        raise textlab.DataError(f"cannot read the encoder's config in {name}: {_first_line(exc)}") from None
    cls = _model_class(transformers, getattr(config, "model_type", "?"))
    try:
        tok = transformers.AutoTokenizer.from_pretrained(source, local_files_only=not hub)
    except Exception as exc:  # noqa: BLE001
        raise textlab.DataError(f"cannot load the tokenizer of {name}: {_first_line(exc)}") from None
    if not getattr(tok, "is_fast", False) or getattr(tok, "backend_tokenizer", None) is None:
        raise textlab.DataError(f"the tokenizer in {name} is not a 'fast' tokenizer (no tokenizer.json)",
                                hint="save it with a fast tokenizer: AutoTokenizer.from_pretrained(..., use_fast=True)"
                                     ".save_pretrained(DIR)")
    try:
        model = cls.from_pretrained(source, local_files_only=not hub)
    except Exception as exc:  # noqa: BLE001 - missing or truncated weights
        raise textlab.DataError(f"cannot load the encoder's weights from {name}: {_first_line(exc)}") from None
    ids = special_ids(tok)
    return {"model": without_pooler(model), "tokenizer_json": tok.backend_tokenizer.to_str(), "config_json": model.config.to_json_string(),
            "hidden": int(model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.d_model),
            "max_positions": int(getattr(model.config, "max_position_embeddings", 512) or 512),
            **ids, "files": folder_hashes(path) if local else {}}


def special_ids(tok: Any) -> dict[str, int]:
    """The ids that open, separate and pad an input ([CLS] [SEP] [PAD] or <s> </s> <pad>)."""
    cls = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
    sep = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else sep
    if sep is None:
        raise textlab.DataError("the encoder's tokenizer has no separator token ([SEP] or </s>)")
    return {"cls_id": int(sep if cls is None else cls), "sep_id": int(sep), "pad_id": int(pad if pad is not None else 0)}


def build_encoder(config_json: str) -> Any:
    """An encoder with random weights from its stored config (a checkpoint's weights are loaded next)."""
    transformers = transformers_module()
    data = json.loads(config_json)
    cls = _model_class(transformers, data.get("model_type", "?"))
    try:
        config = transformers.AutoConfig.for_model(**data)
    except Exception as exc:  # noqa: BLE001
        raise textlab.CheckpointError(f"cannot rebuild the encoder from its stored config: {_first_line(exc)}") from None
    return without_pooler(transformers.AutoModel.from_config(config) if cls is transformers.AutoModel else cls(config))


def without_pooler(model: Any) -> Any:
    """The encoder without its pooler (BERT, RoBERTa...): the ranker reads the first token's state
    itself, and weights that get no gradient stop DistributedDataParallel."""
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model
