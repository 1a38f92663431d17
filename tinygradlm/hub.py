"""Hugging Face Hub names for ``from_pretrained``: turn ``"gpt2"`` into a local directory.

``resolve(name_or_path)`` returns a directory holding ``config.json`` and the weights:

1. a local directory (or a file inside one) is returned as it is;
2. otherwise the name is a hub repo id (``"gpt2"``, ``"openai-community/gpt2"``), looked up in
   the local Hugging Face cache, which needs no network and no ``huggingface_hub``;
3. otherwise, when ``huggingface_hub`` is installed and we are online, the files are
   downloaded into that cache (safetensors only: never the pickled ``*.bin`` files, which can
   run code when loaded);
4. otherwise a ``ModelNotFoundError`` says what to run.

The cache, as ``huggingface_hub`` lays it out (its root is ``cache_root()``: usually
``~/.cache/huggingface/hub``, moved by ``$HF_HUB_CACHE`` or ``$HF_HOME``)::

    models--openai-community--gpt2/          one folder per repo ("/" becomes "--")
      blobs/<sha256>                         each file's bytes, stored once, named by content
      refs/main                              a text file holding a commit hash: "607a30d7..."
      snapshots/607a30d7.../                 one folder per commit, as the repo looked then
        config.json -> ../../blobs/<sha256>  (symlinks into blobs/)
        model.safetensors -> ../../blobs/<sha256>

A revision is a branch or tag (read through ``refs/``) or a commit hash (a snapshot's name).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .files import InputError

# What from_pretrained and the tokenizers read.  No "*.bin": pickles can run code when loaded.
ALLOW_PATTERNS = ["config.json", "generation_config.json", "*.safetensors",
                  "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "vocab.json", "merges.txt", "vocab.txt"]

# "name" or "org/name": letters, digits, "-", "_", "."; not starting or ending with "-" or ".".
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_PART}(?:/{_PART})?")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "on", "yes", "true"}


class ModelNotFoundError(FileNotFoundError):
    """Neither a local directory nor a hub model we have (or can get)."""


def cache_root(cache_dir=None) -> Path:
    """Where the Hugging Face cache lives: ``cache_dir``, else ``$HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
    ``~/.cache/huggingface/hub`` (huggingface_hub's own order)."""
    if cache_dir is None:
        home = os.environ.get("HF_HOME") or Path(
            os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
        cache_dir = os.environ.get("HF_HUB_CACHE") or Path(home, "hub")
    return Path(cache_dir).expanduser()


def cached_snapshot(repo_id: str, revision: str = "main", cache_dir=None) -> Path | None:
    """The cached snapshot directory of ``repo_id`` at ``revision``, or None when the cache
    has no such snapshot with a ``config.json`` in it."""
    repo_dir = cache_root(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    commit = revision
    ref = repo_dir / "refs" / revision
    if not _COMMIT.fullmatch(revision) and ref.is_file():
        commit = ref.read_text().strip()
    snapshot = repo_dir / "snapshots" / commit
    # is_file() follows the symlink: a link whose blob is missing counts as not cached.
    return snapshot if (snapshot / "config.json").is_file() else None


def resolve(name_or_path, *, revision: str = "main", cache_dir=None,
            local_files_only: bool | None = None) -> Path:
    """A local directory holding the model named ``name_or_path`` (see the module docstring).

    ``local_files_only=None`` means "offline if ``HF_HUB_OFFLINE=1`` or
    ``TRANSFORMERS_OFFLINE=1``", as in Hugging Face's libraries."""
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if name and path.is_dir():                 # Path("") is ".": an empty name is no path
        return path
    if path.is_file():
        return path.parent
    if looks_like_path(name):
        raise ModelNotFoundError(f"no such directory: {name!r}")
    if not _REPO_ID.fullmatch(name) or "--" in name or ".." in name or len(name) > 96:
        raise InputError(f"{name!r} is neither a local directory nor a valid Hugging Face repo "
                         f"id (\"name\" or \"org/name\": letters, digits, '-', '_', '.')")
    snapshot = cached_snapshot(name, revision, cache_dir)
    if snapshot is not None:
        return snapshot

    if local_files_only is None:
        local_files_only = any(os.environ.get(v, "").lower() in _TRUE
                               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    try:
        import huggingface_hub
    except ImportError:
        huggingface_hub = None
    if local_files_only or huggingface_hub is None:
        why = ("we are offline (local_files_only, HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
               if local_files_only else "huggingface_hub is not installed")
        raise ModelNotFoundError(
            f"{name!r} is neither a local directory nor in the Hugging Face cache at "
            f"{cache_root(cache_dir)} (revision {revision!r}), and {why}.  To get it, run "
            f"`pip install \"tinygradlm[hub]\"` and `huggingface-cli download {name}` "
            f"on a machine with a network (then retry).")
    try:
        folder = huggingface_hub.snapshot_download(
            name, revision=revision, cache_dir=os.fspath(cache_root(cache_dir)),
            allow_patterns=ALLOW_PATTERNS)
    except Exception as exc:  # no network, unknown repo or revision, gated repo, ...
        raise ModelNotFoundError(f"could not download {name!r} (revision {revision!r}) from the "
                                 f"Hugging Face Hub: {type(exc).__name__}: {exc}") from exc
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"the Hugging Face repo {name!r} has no config.json (is it "
                                 f"a model repo?); downloaded into {folder}")
    return folder


def looks_like_path(name: str) -> bool:
    """True for what can only be a path: "./x", "~/x", "/abs/x", "a/b/c", "x/", "a\\b"."""
    return (name.startswith((".", "~")) or os.path.isabs(name) or name.count("/") > 1
            or name.endswith("/") or "\\" in name)
