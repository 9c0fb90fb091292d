"""Grasp caches: stable initial grasps stored as ``.npy`` with a JSON sidecar.

Array: float32 (N, nq_hand + 7) = [hand joints in actuator order, object xyz, object quat wxyz].
Resolution order: explicit path -> cache directory -> Hugging Face dataset -> generation of a
small cache. Files are written atomically; a file that fails validation is never overwritten or
deleted, the error names it and says how to regenerate it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from unilab.errors import UnilabError
from unilab.files import atomic_write

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
OBJECT_COLUMNS = 7
LEGACY_CACHE_DIR = Path(__file__).resolve().parent / "assets" / "caches"
"""Where unilab up to 2026-12-06 wrote caches (inside the package); still read, never written."""


def default_cache_dir() -> Path:
    """``$UNILAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/unilab``, else ``~/.cache/unilab``: outside the package,
    so an installed (non-editable) unilab never writes into site-packages."""
    if os.environ.get("UNILAB_CACHE_DIR"):
        return Path(os.environ["UNILAB_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "unilab"


class CacheError(UnilabError, RuntimeError):
    """A grasp cache is missing, corrupt or made for another model."""


@dataclass(frozen=True)
class CacheSource:
    """Where grasp caches come from."""

    path: str | None = None
    """Explicit cache file; it must exist when set."""
    cache_dir: str | None = None
    """Folder searched for (and receiving) caches; ``None`` is ``$UNILAB_CACHE_DIR`` or ``~/.cache/unilab``."""
    hf_repo_id: str | None = None
    """Hugging Face dataset holding ``caches/<name>``; ``None`` switches downloads off."""
    hf_revision: str | None = None
    hf_endpoint: str | None = None
    """Hub address (``None``: the library default or ``HF_ENDPOINT``)."""
    generate_count: int = 2000
    """Grasps to collect when no cache can be found; 0 forbids generation."""

    def directory(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()


@dataclass(frozen=True)
class CacheExpectation:
    """What a cache must match to be usable with the current scene."""

    hand: str
    fingerprint: str
    joint_names: tuple[str, ...]
    object_scale: float = 1.0
    regenerate_command: str = ""
    backend: str = ""
    """Simulator that will use the cache; one made on another simulator is allowed and logged."""

    @property
    def columns(self) -> int:
        return len(self.joint_names) + OBJECT_COLUMNS


@dataclass
class CacheMeta:
    """The JSON sidecar written next to every cache."""

    hand: str
    model_id: str
    fingerprint: str
    joint_names: list[str]
    object: dict
    object_scale: float
    rows: int
    made_by: dict = field(default_factory=dict)
    quat_order: str = "wxyz"
    format_version: int = FORMAT_VERSION


def count_tag(count: int) -> str:
    """Row count as written in cache names: 50000 -> ``50k``, 1500 -> ``1500``."""
    return f"{count // 1000}k" if count % 1000 == 0 and count >= 1000 else str(count)


def counted_caches(directory: Path, prefix: str) -> list[Path]:
    """``<prefix>_<count tag>.npy`` files in ``directory`` (what ``collect --count N`` writes), largest first."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)(k?)\.npy$")
    found = []
    for path in directory.glob(f"{prefix}_*.npy") if directory.is_dir() else ():
        match = pattern.match(path.name)
        if match:
            found.append((int(match.group(1)) * (1000 if match.group(2) else 1), path))
    return [path for _, path in sorted(found, key=lambda item: item[0], reverse=True)]


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_cache(path: Path, grasps: np.ndarray, meta: CacheMeta) -> Path:
    """Write ``grasps`` and its sidecar atomically (readers never see a half-written file)."""
    grasps = np.asarray(grasps, dtype=np.float32)
    meta.rows = int(grasps.shape[0])

    def write_array(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, grasps)

    atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(json.dumps(asdict(meta), indent=2)))
    atomic_write(path, write_array)
    return path


def load_cache(path: Path, expected: CacheExpectation) -> np.ndarray:
    """Load and validate a cache; raise :class:`CacheError` naming the file and the fix."""
    fix = f"Move it away and regenerate it: {expected.regenerate_command}" if expected.regenerate_command else ""

    def fail(problem: str) -> CacheError:
        return CacheError(f"grasp cache {path}: {problem}. {fix}".strip())

    try:
        grasps = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise fail(f"cannot be read as a .npy array ({error})") from error
    if grasps.dtype != np.float32:
        raise fail(f"dtype is {grasps.dtype}, expected float32")
    if grasps.ndim != 2 or grasps.shape[1] != expected.columns or grasps.shape[0] == 0:
        raise fail(f"shape is {grasps.shape}, expected (N>0, {expected.columns}) for hand {expected.hand!r}")
    if not np.isfinite(grasps).all():
        raise fail(f"{int((~np.isfinite(grasps)).any(axis=1).sum())} rows hold NaN or inf")
    quat_norm = np.linalg.norm(grasps[:, -4:], axis=1)
    if np.abs(quat_norm - 1.0).max() > 1e-3:
        raise fail("object quaternions are not unit length (expected wxyz unit quaternions)")
    meta_path = sidecar_path(path)
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise fail(f"sidecar {meta_path} is not valid JSON ({error})") from error
        except OSError as error:
            raise fail(f"sidecar {meta_path} cannot be read ({error})") from error
        if not isinstance(meta, dict):
            raise fail(f"sidecar {meta_path} holds a JSON {type(meta).__name__}, expected an object")
        if meta.get("fingerprint") != expected.fingerprint:
            raise fail(
                f"it was made for model fingerprint {meta.get('fingerprint')!r} (hand {meta.get('hand')!r}), "
                f"the current scene has {expected.fingerprint!r}"
            )
        if list(meta.get("joint_names", [])) != list(expected.joint_names):
            raise fail("its joint order differs from the current hand's actuator order")
        if meta.get("quat_order", "wxyz") != "wxyz":
            raise fail(f"quaternion order {meta.get('quat_order')!r}, expected 'wxyz'")
        made_on = meta.get("made_by", {}).get("backend")
        if expected.backend and made_on and made_on != expected.backend:
            log.info("grasp cache %s was collected on %s; using it on %s", path, made_on, expected.backend)
    else:
        log.warning("grasp cache %s has no sidecar; its model fingerprint cannot be checked", path)
    return grasps


HUB_TIMEOUT_SECONDS = 5.0
"""How long the hub may take to answer one request before it counts as unreachable."""
_unreachable_hubs: set[tuple[str, str]] = set()
"""(endpoint, repo) pairs that did not answer: asked once per process, not once per cache file."""


def download_cache(name: str, source: CacheSource) -> Path | None:
    """Fetch ``caches/<name>`` (and its sidecar when present) into the cache folder; ``None`` on failure.

    A hub that cannot be reached (offline, no answer, no such dataset) is remembered for the rest of the
    process, so a 9-scale task decides once instead of waiting for each of its caches.
    """
    if not source.hf_repo_id:
        return None
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    endpoint = source.hf_endpoint or constants.ENDPOINT
    hub = (endpoint, source.hf_repo_id)
    if hub in _unreachable_hubs:
        return None
    if not constants.HF_HUB_OFFLINE and not _answers(endpoint):  # the hub client retries for ~23 s before it gives up
        _unreachable_hubs.add(hub)
        log.warning(
            "Hugging Face endpoint %s does not answer within %g s; grasp caches are not downloaded in this run",
            endpoint,
            HUB_TIMEOUT_SECONDS,
        )
        return None
    target = source.directory() / name
    kwargs = dict(repo_id=source.hf_repo_id, repo_type="dataset", revision=source.hf_revision)
    kwargs["etag_timeout"] = HUB_TIMEOUT_SECONDS
    if source.hf_endpoint:
        kwargs["endpoint"] = source.hf_endpoint
    try:
        downloaded = Path(hf_hub_download(filename=f"caches/{name}", **kwargs))
    except EntryNotFoundError as error:
        if not isinstance(error, LocalEntryNotFoundError):  # the dataset answered: it has no such file
            log.warning("grasp cache %s is not in Hugging Face dataset %s", name, source.hf_repo_id)
            return None
        _unreachable_hubs.add(hub)
        log.warning("Hugging Face dataset %s (%s) unreachable or offline; not asked again: %s", *hub[::-1], error)
        return None
    except Exception as error:  # no answer, no such repo or revision, HTTP errors: fall through to generation
        _unreachable_hubs.add(hub)
        log.warning("Hugging Face dataset %s (%s) not usable; not asked again: %s", *hub[::-1], error)
        return None
    try:
        downloaded_meta = Path(hf_hub_download(filename=f"caches/{name}.json", **kwargs))
        atomic_write(sidecar_path(target), lambda tmp: shutil.copyfile(downloaded_meta, tmp))
    except EntryNotFoundError:
        log.info("dataset %s has no sidecar for %s", source.hf_repo_id, name)
    except Exception as error:
        log.warning("sidecar of %s not downloaded: %s", name, error)
    atomic_write(target, lambda tmp: shutil.copyfile(downloaded, tmp))
    log.info("downloaded grasp cache %s from %s", target, source.hf_repo_id)
    return target


def _answers(endpoint: str) -> bool:
    """Whether a TCP connection to the endpoint's host opens within ``HUB_TIMEOUT_SECONDS``."""
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=HUB_TIMEOUT_SECONDS).close()
    except OSError:
        return False
    return True


def resolve_cache(
    name: str,
    source: CacheSource,
    expected: CacheExpectation,
    generate: Callable[[Path, int], None],
    generated_name: str,
    counted_prefix: str | None = None,
) -> tuple[np.ndarray, Path]:
    """Find, download or generate the cache called ``name``; return the grasps and their file.

    ``generate(path, count)`` must write a cache of ``count`` grasps to ``path``; it is used only
    when nothing else is found, and writes ``generated_name`` in the cache folder. With ``counted_prefix``, any
    ``<prefix>_<N>.npy`` in the folder (a ``collect --count N`` output) is used too, the largest first.
    """
    if source.path:
        path = Path(source.path)
        if not path.exists():
            raise CacheError(
                f"grasp cache {path} (set by the config) does not exist. Generate it with "
                f"{expected.regenerate_command or 'the grasp-collection task'}, "
                "or unset the path to resolve automatically."
            )
        return load_cache(path, expected), path
    directory = source.directory()
    counted = counted_caches(directory, counted_prefix) if counted_prefix else []
    legacy = [LEGACY_CACHE_DIR / name] if not source.cache_dir and directory != LEGACY_CACHE_DIR else []
    for candidate in (directory / name, directory / generated_name, *counted, *legacy):
        if candidate.exists():
            return load_cache(candidate, expected), candidate
    downloaded = download_cache(name, source)
    if downloaded is not None:
        return load_cache(downloaded, expected), downloaded
    if source.generate_count <= 0:
        raise CacheError(
            f"no grasp cache {name} in {directory} and generation is off (generate_count=0). "
            f"Collect one with: {expected.regenerate_command}"
        )
    path = directory / generated_name
    log.warning(
        "no grasp cache %s found (looked in %s%s); collecting %d grasps now. For a full cache run: %s",
        name,
        directory,
        f" and Hugging Face {source.hf_repo_id}" if source.hf_repo_id else "",
        source.generate_count,
        expected.regenerate_command,
    )
    generate(path, source.generate_count)
    return load_cache(path, expected), path
