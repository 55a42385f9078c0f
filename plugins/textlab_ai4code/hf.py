"""An optional Hugging Face tokenizer for the neural ranker, from a local folder (offline clusters).

The tokenizer is read from a folder the user names (`--tokenizer path/to/codebert`), with
`local_files_only=True`: nothing is downloaded unless the user also passes `--hub`. Its JSON
definition is stored in the checkpoint, so `eval` and `generate` do not need the folder again.
"""

from __future__ import annotations

from pathlib import Path

import textlab


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
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        where = "from the folder" if local else "from the Hugging Face hub (offline?)"
        raise textlab.DataError(f"cannot load a tokenizer {where} {name}: {text}") from None
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise textlab.UsageError(f"the tokenizer in {name} is not a 'fast' tokenizer; the neural ranker needs one")
    return backend.to_str()
