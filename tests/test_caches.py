import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from unilab import caches
from unilab.caches import CacheError, CacheSource


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def env(make_env):
    return make_env(num_envs=2)


@pytest.fixture
def good_cache(cache_dir, env) -> Path:
    return cache_dir / env.cache_name


def test_collected_cache_has_sidecar_and_valid_rows(good_cache, env):
    grasps = caches.load_cache(good_cache, env.cache_expectation())
    assert grasps.dtype == np.float32 and grasps.shape[1] == 23
    meta = json.loads(caches.sidecar_path(good_cache).read_text())
    assert meta["hand"] == "allegro" and meta["quat_order"] == "wxyz" and meta["rows"] == len(grasps)
    assert meta["joint_names"] == list(env.hand.joint_names)
    # Every stored grasp held the ball above nominal height - 1.5 cm for the whole hold.
    assert (grasps[:, 18] > env.grasp_criteria().min_object_z).all()


def test_round_trip_is_exact(tmp_path, env):
    grasps = np.random.default_rng(0).normal(size=(5, 23)).astype(np.float32)
    grasps[:, -4:] /= np.linalg.norm(grasps[:, -4:], axis=1, keepdims=True)
    meta = caches.CacheMeta("allegro", "m", env.cache_expectation().fingerprint, list(env.hand.joint_names), {}, 1.0, 0)
    path = caches.save_cache(tmp_path / "round.npy", grasps, meta)
    np.testing.assert_array_equal(caches.load_cache(path, env.cache_expectation()), grasps)
    assert not list(tmp_path.glob("*.tmp"))


def corrupt(path: Path) -> None:
    path.write_bytes(b"not a numpy file")


def wrong_shape(path: Path) -> None:
    np.save(path, np.zeros((4, 20), dtype=np.float32))


def with_nan(path: Path) -> None:
    grasps = np.load(path)
    grasps[1, 3] = np.nan
    np.save(path, grasps)


def wrong_dtype(path: Path) -> None:
    np.save(path, np.load(path).astype(np.float64))


def other_fingerprint(path: Path) -> None:
    sidecar = caches.sidecar_path(path)
    meta = json.loads(sidecar.read_text())
    meta["fingerprint"] = "0123456789abcdef"
    sidecar.write_text(json.dumps(meta))


def sidecar_of_binary_garbage(path: Path) -> None:
    caches.sidecar_path(path).write_bytes(bytes(range(256)))


def sidecar_not_an_object(path: Path) -> None:
    caches.sidecar_path(path).write_text("[1, 2, 3]")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (sidecar_of_binary_garbage, "is not valid JSON"),
        (sidecar_not_an_object, "holds a JSON list, expected an object"),
        (corrupt, "cannot be read"),
        (wrong_shape, "shape"),
        (with_nan, "NaN"),
        (wrong_dtype, "float32"),
        (other_fingerprint, "fingerprint"),
    ],
)
def test_bad_cache_raises_clear_error_and_is_left_untouched(tmp_path, good_cache, env, damage, message):
    path = tmp_path / env.cache_name
    path.write_bytes(good_cache.read_bytes())
    caches.sidecar_path(path).write_bytes(caches.sidecar_path(good_cache).read_bytes())
    damage(path)
    before = (digest(path), digest(caches.sidecar_path(path)))
    source = CacheSource(cache_dir=str(tmp_path), generate_count=10)
    with pytest.raises(CacheError, match=message) as error:
        caches.resolve_cache(
            env.cache_name, source, env.cache_expectation(), generate=pytest.fail, generated_name="x.npy"
        )
    assert str(path) in str(error.value) and "unilab train --task allegro_inhand_grasp" in str(error.value)
    assert (digest(path), digest(caches.sidecar_path(path))) == before


def test_explicit_missing_path_is_an_error(tmp_path, env):
    source = CacheSource(path=str(tmp_path / "nope.npy"))
    with pytest.raises(CacheError, match="does not exist"):
        caches.resolve_cache("a.npy", source, env.cache_expectation(), generate=pytest.fail, generated_name="b.npy")


def test_offline_resolution_falls_back_to_generation(tmp_path, make_env):
    env = make_env(
        num_envs=2, cache=CacheSource(cache_dir=str(tmp_path), hf_repo_id="unilabsim/caches", generate_count=6)
    )
    env.reset(seed=0)  # HF_HUB_OFFLINE=1: the download fails fast, then 6 grasps are collected
    assert len(env.grasps) == 6
    assert (tmp_path / "allegro_grasp_6.npy").exists() and (tmp_path / "allegro_grasp_6.npy.json").exists()
    stats = env.last_collection_stats  # what benchmarks/grasp_rate.py reports against the physics ceiling
    assert stats.physics_env_steps > 0 and 0 < stats.physics_seconds <= stats.seconds


def test_generation_off_names_the_collect_command(tmp_path, env):
    source = CacheSource(cache_dir=str(tmp_path), generate_count=0)
    with pytest.raises(CacheError, match="unilab train --task allegro_inhand_grasp"):
        caches.resolve_cache("a.npy", source, env.cache_expectation(), generate=pytest.fail, generated_name="b.npy")


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Serves files under /datasets/<repo>/resolve/<revision>/<path> like the Hugging Face hub."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def _respond(self, body: bool) -> None:
        self.requests.append(f"{self.command} {self.path}")
        content = self.files.get(self.path)
        if content is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", "a" * 40)
        self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_HEAD(self):  # noqa: N802
        self._respond(body=False)

    def do_GET(self):  # noqa: N802
        self._respond(body=True)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeHub.files, FakeHub.requests = {}, []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_from_local_hub_server(fake_hub, tmp_path, good_cache, env):
    prefix = "/datasets/unilabsim/unilab-caches/resolve/main/caches"
    FakeHub.files = {
        f"{prefix}/{env.cache_name}": good_cache.read_bytes(),
        f"{prefix}/{env.cache_name}.json": caches.sidecar_path(good_cache).read_bytes(),
    }
    target_dir = tmp_path / "downloaded"
    source = CacheSource(
        cache_dir=str(target_dir), hf_repo_id="unilabsim/unilab-caches", hf_revision="main", hf_endpoint=fake_hub
    )
    grasps, path = caches.resolve_cache(
        env.cache_name, source, env.cache_expectation(), generate=pytest.fail, generated_name="b.npy"
    )
    assert path == target_dir / env.cache_name
    assert digest(path) == digest(good_cache)
    assert len(grasps) == len(np.load(good_cache))
    assert any(request.startswith("GET") for request in FakeHub.requests)


def test_download_missing_file_falls_back_to_generation(fake_hub, tmp_path, env):
    source = CacheSource(
        cache_dir=str(tmp_path), hf_repo_id="unilabsim/unilab-caches", hf_endpoint=fake_hub, generate_count=5
    )
    generated = []

    def generate(path: Path, count: int) -> None:
        generated.append(count)
        env.write_grasp_cache(path, count, num_envs=32)

    grasps, path = caches.resolve_cache(
        env.cache_name, source, env.cache_expectation(), generate=generate, generated_name="gen.npy"
    )
    assert generated == [source.generate_count] and path.name == "gen.npy"
    assert FakeHub.requests, "the hub was asked first"


def test_a_collect_count_output_is_found_by_training_without_renaming(tmp_path, good_cache, make_env):
    """``collect --count 2000`` writes ``allegro_grasp_2k.npy``; training looks for 50k, then its own
    generation size, and then takes the largest ``allegro_grasp_<N>.npy`` in the folder."""
    for name in ("allegro_grasp_2k.npy", "allegro_grasp_300.npy"):
        (tmp_path / name).write_bytes(good_cache.read_bytes())
        caches.sidecar_path(tmp_path / name).write_bytes(caches.sidecar_path(good_cache).read_bytes())
    (tmp_path / "allegro_grasp_notes.npy").write_bytes(b"not a cache and not a count")
    env = make_env(num_envs=2, cache=CacheSource(cache_dir=str(tmp_path), generate_count=0))
    env.reset(seed=0)
    assert len(env.grasps) == len(np.load(good_cache))
    assert caches.counted_caches(tmp_path, "allegro_grasp") == [
        tmp_path / "allegro_grasp_2k.npy",
        tmp_path / "allegro_grasp_300.npy",
    ]


def test_an_unreachable_hub_is_asked_once_per_process(fake_hub, tmp_path, monkeypatch, caplog):
    import socket

    with socket.socket() as probe:  # a port on 127.0.0.1 that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(caches, "_unreachable_hubs", set())
    calls = []
    import huggingface_hub

    original = huggingface_hub.hf_hub_download

    def counting(*args, **kwargs):
        calls.append(kwargs["filename"])
        return original(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", counting)
    source = CacheSource(cache_dir=str(tmp_path), hf_repo_id="unilabsim/unilab-caches", hf_endpoint=closed)
    with caplog.at_level("WARNING", logger="unilab.caches"):
        assert caches.download_cache("sharpa_grasp_0.8.npy", source) is None
        assert caches.download_cache("sharpa_grasp_0.9.npy", source) is None
    assert calls == []  # the client's own retries (about 23 s per file) are never entered
    assert len(caplog.records) == 1 and "does not answer" in caplog.text
    # a reachable hub that lacks one file is asked again for the next
    reachable = CacheSource(cache_dir=str(tmp_path), hf_repo_id="unilabsim/unilab-caches", hf_endpoint=fake_hub)
    assert caches.download_cache("a.npy", reachable) is None and caches.download_cache("b.npy", reachable) is None
    assert calls == ["caches/a.npy", "caches/b.npy"]


def test_caches_default_to_a_user_folder_outside_the_package(monkeypatch, tmp_path):
    package = Path(caches.__file__).resolve().parent
    monkeypatch.delenv("UNILAB_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert CacheSource().directory() == tmp_path / "xdg" / "unilab"
    monkeypatch.setenv("UNILAB_CACHE_DIR", str(tmp_path / "mine"))
    assert CacheSource().directory() == tmp_path / "mine"
    assert not CacheSource().directory().resolve().is_relative_to(package)


def test_a_cache_left_in_the_old_package_folder_is_still_read(monkeypatch, tmp_path, good_cache, env):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / env.cache_name).write_bytes(good_cache.read_bytes())
    monkeypatch.setattr(caches, "LEGACY_CACHE_DIR", legacy)
    monkeypatch.setenv("UNILAB_CACHE_DIR", str(tmp_path / "empty"))
    grasps, path = caches.resolve_cache(
        env.cache_name, CacheSource(generate_count=0), env.cache_expectation(), generate=pytest.fail, generated_name="x"
    )
    assert path == legacy / env.cache_name and len(grasps) == len(np.load(good_cache))


def test_a_cache_too_small_for_an_epoch_of_starts_is_warned_about(make_env, caplog):
    env = make_env(num_envs=8)
    with caplog.at_level("WARNING", logger="unilab.tasks.grasp_cache"):
        env.load_grasps()  # 8 envs, one reset each: the 48-grasp cache is enough
        assert "starts repeat" not in caplog.text
        env.load_grasps(training_envs=64, control_steps_per_epoch=800)  # 64 envs x 2 time-outs per epoch
    assert "holds 48 grasps, but its 64 envs start at least 128 episodes within one epoch" in caplog.text
