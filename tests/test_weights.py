"""``oxe-augment weights``: offline failures, a cache laid out by the test, resolve_weights."""

from __future__ import annotations

import hashlib
import http.server
import os
import pathlib
import socket
import threading

import pytest
from huggingface_hub import constants as hf_constants

from pipelines.weights import KNOWN_MODELS, WeightsError, resolve_weights
from tests.conftest import run_cli

REVISION = "0123456789abcdef0123456789abcdef01234567"


def add_to_cache(cache: pathlib.Path, repo_id: str, files: dict[str, bytes]) -> pathlib.Path:
    """Lay out ``files`` of ``repo_id`` as huggingface_hub does; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> pathlib.Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def closed_port_endpoint() -> str:
    """An http address on this machine where nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.timeout(60)
def test_get_with_hf_hub_offline_exits_2_and_says_what_to_download(hf_cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run_cli("weights", "get", "sam2.1-tiny") == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err
    assert "https://huggingface.co/facebook/sam2.1-hiera-tiny/resolve/main/sam2.1_hiera_tiny.pt" in err
    assert "sam2.1_hiera_t.yaml" in err
    assert "--set segmentation.checkpoint=" in err
    assert not any(hf_cache.iterdir()), "nothing may be written to the cache when offline"


@pytest.mark.timeout(60)
def test_get_pipeline_when_hub_refuses_connections_exits_2_at_once(hf_cache, monkeypatch, capsys):
    # huggingface_hub alone retries a refused connection for ~25 s; the command must not.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    assert run_cli("weights", "get", "sdxl-inpainting") == 2
    err = capsys.readouterr().err
    assert "cannot be reached" in err
    assert "diffusers/stable-diffusion-xl-1.0-inpainting-0.1" in err
    assert "--set background.model=" in err


class HubStandIn(http.server.BaseHTTPRequestHandler):
    """The few Hub answers ``hf_hub_download`` needs (HEAD with commit and ETag, then GET),
    on this machine: the real Hub cannot be reached from the test machines."""

    files = {"facebook/sam2.1-hiera-tiny": {"sam2.1_hiera_tiny.pt": b"weights" * 300, "sam2.1_hiera_t.yaml": b"model: {}\n"}}

    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?")[0].lstrip("/")
        if path.startswith("api/"):  # model info, probed before downloading
            body = b'{"id": "facebook/sam2.1-hiera-tiny"}'
        else:  # <org>/<name>/resolve/<revision>/<file>
            parts = path.split("/")
            body = self.files.get("/".join(parts[:2]), {}).get("/".join(parts[4:]))
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", REVISION)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self):
        self._answer(with_body=False)

    def do_GET(self):
        self._answer(with_body=True)

    def log_message(self, *args):
        pass


@pytest.mark.timeout(120)
def test_get_downloads_into_the_cache_and_prints_the_path_to_use(hf_cache, monkeypatch, capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # huggingface_hub reads HF_HUB_OFFLINE once, when first imported: this test is the
        # machine with network, whatever the environment the suite started in.
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert run_cli("weights", "get", "sam2.1-tiny") == 0
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    snapshot = hf_cache / "models--facebook--sam2.1-hiera-tiny" / "snapshots" / REVISION
    assert (snapshot / "sam2.1_hiera_tiny.pt").read_bytes() == HubStandIn.files["facebook/sam2.1-hiera-tiny"][
        "sam2.1_hiera_tiny.pt"
    ]
    assert (snapshot / "sam2.1_hiera_t.yaml").exists()
    assert f"--set segmentation.checkpoint={snapshot / 'sam2.1_hiera_tiny.pt'}" in out
    # ... and the cache now answers offline.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights("sam2.1-tiny") == str(snapshot / "sam2.1_hiera_tiny.pt")


def test_get_robotseg_points_to_the_authors_release(hf_cache, capsys):
    assert run_cli("weights", "get", "robotseg") == 2
    err = capsys.readouterr().err
    assert "not published on the Hugging Face Hub" in err
    assert KNOWN_MODELS["robotseg"].homepage in err
    assert "segmentation.checkpoint=" in err


def test_list_finds_models_in_a_cache_laid_out_by_the_test(hf_cache, capsys):
    tiny = add_to_cache(
        hf_cache, "facebook/sam2.1-hiera-tiny", {"sam2.1_hiera_tiny.pt": b"weights" * 100, "sam2.1_hiera_t.yaml": b"model: {}\n"}
    )
    add_to_cache(hf_cache, "facebook/sam2.1-hiera-small", {"sam2.1_hiera_s.yaml": b"model: {}\n"})
    sdxl = add_to_cache(
        hf_cache, "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", {"model_index.json": b"{}", "unet/config.json": b"{}"}
    )

    assert run_cli("weights", "list") == 0
    lines = {
        line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip() and not line.startswith("   ")
    }
    assert "present" in lines["sam2.1-tiny"] and str(tiny / "sam2.1_hiera_tiny.pt") in lines["sam2.1-tiny"]
    assert "incomplete: missing sam2.1_hiera_small.pt" in lines["sam2.1-small"]
    assert "present" in lines["sdxl-inpainting"] and str(sdxl) in lines["sdxl-inpainting"]
    assert "absent" in lines["sam3"]
    add_to_cache(hf_cache, "facebook/sam3", {"config.json": b"{}", "model.safetensors": b"w"})
    assert run_cli("weights", "list") == 0
    assert str(hf_cache / "models--facebook--sam3" / "snapshots" / REVISION) in capsys.readouterr().out


def test_resolve_weights_takes_paths_registry_names_and_hub_ids_from_the_cache(hf_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = tmp_path / "robotseg.pt"
    local.write_bytes(b"x")
    assert resolve_weights(str(local)) == str(local)
    assert resolve_weights("gs://bucket/robotseg.pt") == "gs://bucket/robotseg.pt"

    tiny = add_to_cache(hf_cache, "facebook/sam2.1-hiera-tiny", {"sam2.1_hiera_tiny.pt": b"w", "sam2.1_hiera_t.yaml": b"m"})
    assert resolve_weights("sam2.1-tiny") == str(tiny / "sam2.1_hiera_tiny.pt")
    assert resolve_weights("facebook/sam2.1-hiera-tiny/sam2.1_hiera_t.yaml") == str(tiny / "sam2.1_hiera_t.yaml")
    assert resolve_weights("facebook/sam2.1-hiera-tiny") == str(tiny)


def test_resolve_weights_names_what_is_missing(hf_cache):
    with pytest.raises(WeightsError, match="sdxl-inpainting.*not in the Hugging Face cache"):
        resolve_weights("sdxl-inpainting")
    with pytest.raises(WeightsError, match="org/missing.*not in the Hugging Face cache"):
        resolve_weights("org/missing/model.pt")
    with pytest.raises(WeightsError, match="no such file or folder"):
        resolve_weights("./not/here.pt")


def test_weights_help_lists_the_known_models(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("weights", "get", "--help")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: oxe-augment weights get" in out
    compact = "".join(out.split())  # argparse wraps long lines, at hyphens too
    assert all(name in compact for name in KNOWN_MODELS)
    assert run_cli("weights") == 2  # no subcommand: the help, and a usage error
