"""``tinygradlm.hub.resolve``: local directories, the Hugging Face cache (laid out here exactly
as ``huggingface_hub`` lays it out: blobs, symlinked snapshot files, refs), the cache's
environment variables, the offline and not-installed errors, and the download call (faked: these
tests never touch the network)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinygradlm import hub
from tinygradlm.files import InputError

MAIN, OLD = "607a30d783dfa663caf39e06633721c8d4cfcd7e", "11c5a3d5811f50298f278a704980280950aedb10"
HF_VARS = ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No Hugging Face variable from the machine, a fake home, and no download possible."""
    for var in HF_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        import huggingface_hub
    except ImportError:
        return

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to download")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)


def make_cache(root, repo_id="openai-community/gpt2", commit=MAIN, ref="main", files=None):
    """Lay out ``repo_id`` at ``commit`` under the cache ``root`` as huggingface_hub does;
    return the snapshot directory."""
    files = files or {"config.json": b'{"model_type": "gpt2"}', "model.safetensors": b"weights"}
    repo = Path(root) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for d in (repo / "blobs", repo / "refs", snapshot):
        d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        try:
            os.symlink(Path("..", "..", "blobs", blob.name), snapshot / name)
        except OSError:      # no symlinks (Windows without developer mode): a copy, as HF does
            (snapshot / name).write_bytes(data)
    if ref is not None:
        (repo / "refs" / ref).write_text(commit)         # no newline, as huggingface_hub writes
    return snapshot


# --- the cache --------------------------------------------------------------------------------
def test_cache_by_name_and_by_org_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    gpt2 = make_cache(tmp_path / "cache", "gpt2")
    org = make_cache(tmp_path / "cache", "openai-community/gpt2")
    assert hub.resolve("gpt2") == gpt2
    assert hub.resolve("openai-community/gpt2") == org
    assert org.parent.parent.name == "models--openai-community--gpt2"
    if (org / "config.json").is_symlink():
        assert (org / "config.json").resolve().parent.name == "blobs"


def test_revisions_branch_tag_and_commit_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    old = make_cache(tmp_path, "gpt2", commit=OLD, ref="v1.0")
    new = make_cache(tmp_path, "gpt2", commit=MAIN, ref="main")
    assert hub.resolve("gpt2") == new
    assert hub.resolve("gpt2", revision="v1.0") == old
    assert hub.resolve("gpt2", revision=OLD) == old         # a hash names the snapshot itself
    assert hub.resolve("gpt2", revision=MAIN) == new


@pytest.mark.parametrize("where", ["cache_dir", "HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME",
                                   "home"])
def test_cache_root(tmp_path, monkeypatch, where):
    root = {"cache_dir": tmp_path / "mine", "HF_HUB_CACHE": tmp_path / "hubcache",
            "HF_HOME": tmp_path / "hfhome" / "hub",
            "XDG_CACHE_HOME": tmp_path / "xdg" / "huggingface" / "hub",
            "home": tmp_path / "home" / ".cache" / "huggingface" / "hub"}[where]
    snapshot = make_cache(root, "gpt2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if where == "cache_dir":
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))   # the argument wins
        assert hub.resolve("gpt2", cache_dir=root) == snapshot
        return
    if where == "HF_HUB_CACHE":
        monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))        # HF_HUB_CACHE wins
        monkeypatch.setenv("HF_HUB_CACHE", str(root))
    if where == "HF_HOME":
        monkeypatch.setenv("HF_HOME", str(root.parent))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))  # HF_HOME wins
    if where == "XDG_CACHE_HOME":
        monkeypatch.setenv("XDG_CACHE_HOME", str(root.parent.parent))
    assert hub.cache_root() == root
    assert hub.resolve("gpt2") == snapshot


def test_the_layout_and_the_root_agree_with_huggingface_hub(tmp_path, monkeypatch):
    """huggingface_hub itself finds a file in our fake cache, and puts its cache where
    ``cache_root`` says (it reads the variables when imported: ask a fresh Python)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    snapshot = make_cache(tmp_path / "cache", "openai-community/gpt2")
    found = huggingface_hub.try_to_load_from_cache("openai-community/gpt2", "config.json",
                                                   cache_dir=tmp_path / "cache")
    assert Path(found) == snapshot / "config.json"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    theirs = subprocess.run([sys.executable, "-c", "from huggingface_hub import constants; "
                             "print(constants.HF_HUB_CACHE)"], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert Path(theirs) == hub.cache_root() == tmp_path / "hfhome" / "hub"


def test_a_snapshot_without_config_or_with_a_missing_blob_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_cache(tmp_path, "gpt2", files={"model.safetensors": b"w"})
    with pytest.raises(hub.ModelNotFoundError):
        hub.resolve("gpt2")
    snapshot = make_cache(tmp_path, "bert-base-uncased")
    if not (snapshot / "config.json").is_symlink():
        pytest.skip("no symlinks here")
    (snapshot / "config.json").resolve().unlink()              # the link now dangles
    with pytest.raises(hub.ModelNotFoundError):
        hub.resolve("bert-base-uncased")


# --- local paths ------------------------------------------------------------------------------
def test_a_local_directory_passes_through(tmp_path, monkeypatch):
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text("{}")
    assert hub.resolve(tmp_path / "gpt2") == tmp_path / "gpt2"
    assert hub.resolve(str(tmp_path / "gpt2" / "config.json")) == tmp_path / "gpt2"
    monkeypatch.chdir(tmp_path)
    assert hub.resolve("gpt2") == Path("gpt2")       # a local directory beats a hub name


@pytest.mark.parametrize("name", ["./out/model", "~/models/gpt2", "/no/such/model",
                                  "runs/a/best", "out/"])
def test_a_missing_local_path_says_no_such_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(hub.ModelNotFoundError, match="no such directory") as info:
        hub.resolve(name)
    assert "huggingface" not in str(info.value)


# --- not cached -------------------------------------------------------------------------------
@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "argument"])
def test_offline_and_not_cached(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    kwargs = {"local_files_only": True} if offline == "argument" else {}
    if offline != "argument":
        monkeypatch.setenv(offline, "1")
    with pytest.raises(hub.ModelNotFoundError) as info:
        hub.resolve("gpt2", **kwargs)
    message = str(info.value)
    assert "huggingface-cli download gpt2" in message and "offline" in message
    assert str(tmp_path / "cache") in message
    assert isinstance(info.value, FileNotFoundError)


def test_huggingface_hub_missing_and_not_cached(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)    # `import` now fails
    with pytest.raises(hub.ModelNotFoundError) as info:
        hub.resolve("openai-community/gpt2")
    message = str(info.value)
    assert 'pip install "tinygradlm[hub]"' in message and "not installed" in message
    assert "huggingface-cli download openai-community/gpt2" in message


# --- downloading (faked) ----------------------------------------------------------------------
def test_download_asks_for_safetensors_only(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(make_cache(kwargs["cache_dir"], repo_id))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    folder = hub.resolve("openai-community/gpt2", cache_dir=tmp_path)
    assert folder == tmp_path / "models--openai-community--gpt2" / "snapshots" / MAIN
    [(repo_id, kwargs)] = calls
    assert repo_id == "openai-community/gpt2" and kwargs["revision"] == "main"
    assert Path(kwargs["cache_dir"]) == tmp_path
    patterns = kwargs["allow_patterns"]
    assert "*.safetensors" in patterns and "config.json" in patterns
    assert not any(p.endswith(".bin") or p in ("*", "*.*") for p in patterns)
    assert hub.resolve("openai-community/gpt2", cache_dir=tmp_path) == folder  # now cached
    assert len(calls) == 1


def test_download_errors_are_clear(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def offline(repo_id, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(hub.ModelNotFoundError, match="could not download 'gpt2'.*huggingface.co"):
        hub.resolve("gpt2", cache_dir=tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kw: str(make_cache(tmp_path, repo_id, files={"a": b""})))
    with pytest.raises(hub.ModelNotFoundError, match="has no config.json"):
        hub.resolve("gpt2", cache_dir=tmp_path / "empty")


# --- repo ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gpt 2", "gpt2!", "gpt2?", "-gpt2", "gpt2.", "gpt2-", "a--b",
                                  "a..b", "org/na me", "org/x-", "gpt2\u00e9", "x" * 97, ""])
def test_invalid_repo_ids(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="valid Hugging Face repo id"):
        hub.resolve(name)


@pytest.mark.parametrize("name", ["gpt2", "bert-base-uncased", "openai-community/gpt2",
                                  "EleutherAI/pythia-70m", "google/flan_t5.small", "_a"])
def test_valid_repo_ids_get_to_the_cache_lookup(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.ModelNotFoundError, match="Hugging Face cache"):
        hub.resolve(name)
