"""Which weights an encoder serves, pinned, and proof that every one of them loaded (issue 18).

    w = resolve_weights("facebook/vjepa2-vitl-fpc64-256", "main")   # -> ResolvedWeights(path=<snapshot dir>,
    w.commit                                                          #    commit=<40-hex sha the hub resolved>)
    w = resolve_weights("/ckpt/dir")                                  # a local directory: commit=None,
    w.weights                                                         #    weights="sha256:<16 hex of its files>"
    model, info = SomeModel.from_pretrained(w.path, output_loading_info=True)
    check_loading(info, source, family="V-JEPA 2")                    # WeightsError: one line naming what did not load

Why pin: a moving name ("main") hashed into the encoder id would let new embeddings reuse an old id after the hub's
`main` moves, and "already embedded" would silently mix two sets of weights. A hub id is resolved to the commit of
the snapshot actually loaded: huggingface_hub.snapshot_download returns `<cache>/models--org--name/snapshots/<commit>`
(online it asks the hub what the revision points to; offline it reads `refs/<revision>` of the cache), so the
folder name IS the resolved commit. A local directory has no commit: its id is a content hash of its weight and
config files, so two different checkpoints saved at the same path get different ids, and a copy elsewhere the same.

Why check: transformers' from_pretrained instantiates the class it is asked for, loads the tensors whose names
match and *randomly initialises the rest* with only a log line (a DINOv2 directory loaded as VJEPA2Model starts
and answers /encode with random weights). With `output_loading_info=True` it returns missing_keys,
unexpected_keys, mismatched_keys and error_msgs; a loader refuses unless every weight of the model loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# what a checkpoint's weights and configs are made of (config.json, model.safetensors, sharded index, *.bin)
WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin")
HUB_PATTERNS = (["*.json", "*.safetensors"], ["*.json", "*.bin"])  # older repos ship .bin weights only
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHOWN_KEYS = 3  # keys named in the one-line error; the rest are counted


class WeightsError(OSError):
    """The checkpoint cannot be served as asked: wrong model type, weights that did not all load, or no weights.

    An OSError, like from_pretrained's own "cannot find" errors, so callers keep one except clause."""


@dataclass(frozen=True)
class ResolvedWeights:
    """A checkpoint pinned: where its files are, and what identifies its weights."""

    source: str  # what was asked: a hub id or a directory (as given)
    path: str  # a local directory holding config.json + weights (a hub snapshot folder, or the directory)
    revision: str | None  # what was asked for a hub id ("main", a tag, a sha); None for a directory
    commit: str | None  # the 40-hex commit the hub resolved `revision` to; None for a directory
    content_hash: str | None  # "sha256:<16 hex>" of a directory's weight and config files; None for a hub id

    @property
    def local(self) -> bool:
        return self.commit is None

    @property
    def weights(self) -> str:
        """The pin recorded in the encoder id and lineage: the commit, or the directory's content hash."""
        return self.commit or self.content_hash or ""

    def model_type(self) -> str | None:
        """config.json's model_type (None when it has none): read before instantiating anything."""
        try:
            return json.loads((Path(self.path) / "config.json").read_text()).get("model_type")
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{self.source}: no readable config.json in {self.path} ({exc})") from exc


def content_hash(directory: str | os.PathLike, suffixes: Iterable[str] = WEIGHT_SUFFIXES) -> str:
    """sha256 over (file name, sha256 of bytes) of the directory's top-level weight and config files, 16 hex.

    Hashes every byte (a ViT-L safetensors file, 1.3 GB, takes ~2 s at disk speed): a size/mtime shortcut would
    miss a checkpoint rewritten in place with the same size."""
    root = Path(directory)
    names = sorted(p.name for p in root.iterdir() if p.is_file() and p.name.endswith(tuple(suffixes)))
    if not names:
        raise WeightsError(f"{directory}: no weight or config files ({', '.join(suffixes)}) to load")
    outer = hashlib.sha256()
    for name in names:
        inner = hashlib.sha256()
        with open(root / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(f"{name}\0{inner.hexdigest()}\n".encode())
    return "sha256:" + outer.hexdigest()[:16]


def resolve_hub(
    repo: str, revision: str | None = None, *, cache_dir: str | None = None, local_files_only: bool | None = None
) -> ResolvedWeights:
    """Download (or find in the cache) a hub snapshot and return its folder and the commit it resolved to.

    local_files_only: default huggingface_hub's HF_HUB_OFFLINE; then `revision` is resolved through the cache's
    refs/<revision> file (or taken as is when it is a commit sha)."""
    from huggingface_hub import constants, snapshot_download

    offline = constants.HF_HUB_OFFLINE if local_files_only is None else local_files_only
    path = None
    for patterns in HUB_PATTERNS:
        path = snapshot_download(
            repo, revision=revision, allow_patterns=patterns, cache_dir=cache_dir, local_files_only=offline
        )
        if any(n.endswith((".safetensors", ".bin")) for n in os.listdir(path)):
            break
    commit = Path(path).name
    if not COMMIT_RE.match(commit):  # not a `snapshots/<commit>` folder: a local_dir download or a changed layout
        raise WeightsError(f"{repo}: cannot tell which commit {revision or 'main'!r} resolved to (snapshot {path})")
    return ResolvedWeights(source=repo, path=str(path), revision=revision, commit=commit, content_hash=None)


def resolve_weights(source: str, revision: str | None = None, **hub_kwargs: Any) -> ResolvedWeights:
    """A local directory (content-hashed) or a hub id (resolved to a commit). Raises OSError when neither."""
    if os.path.isdir(source):
        path = os.path.realpath(source)
        return ResolvedWeights(source=source, path=path, revision=None, commit=None, content_hash=content_hash(path))
    if os.path.exists(source) or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise WeightsError(f"cannot load {source!r}: not a directory holding a checkpoint, nor a hub id (org/name)")
    return resolve_hub(source, revision, **hub_kwargs)


def _keys(kind: str, keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:SHOWN_KEYS]) + (f", ... {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")
    return f"{len(keys)} {kind} ({shown})"


def check_loading(
    info: dict[str, Any],
    source: str,
    family: str,
    *,
    ignore_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
) -> list[str]:
    """Raise WeightsError (one line) unless every weight of the model was loaded from the checkpoint.

    info: from_pretrained(..., output_loading_info=True)'s dict. ignore_missing: name prefixes of parameters the
    encoder never runs (V-JEPA 2's predictor); ignore_unexpected: prefixes of checkpoint tensors it does not need
    (SigLIP's text tower, VideoMAE's pre-training decoder). Returns the ignored missing keys (for the log)."""
    missing = [k for k in info.get("missing_keys") or () if not k.startswith(ignore_missing)]
    unexpected = [k for k in info.get("unexpected_keys") or () if not k.startswith(ignore_unexpected)]
    mismatched = [k if isinstance(k, str) else str(k[0]) for k in info.get("mismatched_keys") or ()]
    errors = [str(e).splitlines()[0] for e in info.get("error_msgs") or ()]
    problems = [
        _keys(kind, keys)
        for kind, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mismatched", mismatched),
            ("errors", errors),
        )
        if keys
    ]
    if problems:
        raise WeightsError(
            f"{source}: not every weight loaded as {family}: "
            + "; ".join(problems)
            + ". Refusing to serve randomly initialised weights: give a complete checkpoint of "
            "this family, or the right --family."
        )
    return sorted(k for k in info.get("missing_keys") or () if k.startswith(ignore_missing))
