"""The serving API on real exports, through FastAPI's in-process client: every bad request a 422 naming the field,
the same seed the same bytes on both runtimes, labels by name, batching that changes no answer, Prometheus text."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from components.config import TrainConfig
from components.core.errors import GanopsError
from components.serving.app import ServeSettings, ServeState, create_app
from components.serving.batching import Batcher
from components.serving.export import export_generator
from components.serving.formats import CONFIG, GOLDEN, MANIFEST, MODEL_CARD, ONNX, SAMPLES, TORCHSCRIPT, WEIGHTS
from components.serving.runtime import latents, load_served
from components.training.networks import build_generator
from components.training.state import model_spec
from components.training.weights import save_generator

LABELS = ["zero", "one", "two"]


def make_export(tmp_path, arch="dcgan", version="1"):
    import torch

    torch.manual_seed(int(version))
    spec = model_spec(TrainConfig(arch=arch, z_dim=8, base_channels=16), 1, 8, len(LABELS))
    weights = save_generator(tmp_path / f"g{version}.safetensors", build_generator(spec).eval(), spec, {"validation": {"labels": LABELS}})
    return export_generator(weights, tmp_path / "exports", "m", version, {"ganops.dataset_md5": "abc"})


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {"dcgan": make_export(root), "cdcgan": make_export(root / "c", "cdcgan")}


def client_for(folder, runtime="torchscript", **settings):
    return TestClient(create_app(ServeState(load_served(folder, runtime), ServeSettings(**settings))))


@pytest.mark.parametrize(
    "body, field",
    [
        ({"n": 0}, "n"),
        ({"n": 9}, "n"),  # above max_n
        ({"n": 1.5}, "n"),
        ({"n": True}, "n"),
        ({"seed": "7"}, "seed"),
        ({"seed": 7.25}, "seed"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**53}, "seed"),
        ({"format": "gif"}, "format"),
        ({"colour": "red"}, "colour"),
        ({"class": "one"}, "class"),  # the dcgan export is unconditional
        ("[1, 2]", "body"),
        ("{not json", "body"),
        ('{"n": 1, "pad": "' + "x" * 5000 + '"}', "body"),  # above max_body_bytes
    ],
)
def test_every_bad_request_is_a_422_naming_the_field(exports, body, field):
    with client_for(exports["dcgan"], max_n=8, max_body_bytes=1024) as client:
        raw = body if isinstance(body, str) else json.dumps(body)
        r = client.post("/v1/generate", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail[0]["field"] == field and "Traceback" not in r.text
        assert 'ganops_serve_errors_total{kind="request"}' in client.get("/metrics").text


@pytest.mark.parametrize(
    "body, field",
    [
        ({"class": "seven"}, "class"),
        ({"labels": ["one", "nine"], "n": 2}, "labels.1"),
        ({"labels": [], "n": 2}, "labels"),
        ({"labels": ["one"], "class": "one"}, "labels"),
        ({"class": 1}, "class"),
        ({"labels": None}, "labels"),
    ],
)
def test_a_conditional_model_refuses_unknown_or_conflicting_labels(exports, body, field):
    with client_for(exports["cdcgan"]) as client:
        r = client.post("/v1/generate", json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == field, r.text


def test_labels_are_cycled_over_the_images(exports):
    with client_for(exports["cdcgan"]) as client:
        cycled = client.post("/v1/generate", json={"n": 4, "seed": 2, "labels": ["one", "two"], "format": "npy"})
        spelled = client.post("/v1/generate", json={"n": 4, "seed": 2, "labels": ["one", "two", "one", "two"], "format": "npy"})
        assert cycled.status_code == 200 and cycled.content == spelled.content


def test_the_same_seed_gives_the_same_bytes_on_both_runtimes_and_names_the_model(exports):
    folder = exports["cdcgan"]
    answers = []
    for runtime in ("torchscript", "onnx"):
        with client_for(folder, runtime) as client:
            r1 = client.post("/v1/generate", json={"n": 6, "seed": 11, "class": "two", "format": "npy"})
            r2 = client.post("/v1/generate", json={"n": 6, "seed": 11, "labels": ["two"] * 6, "format": "npy"})
            assert r1.status_code == 200 and r1.content == r2.content
            assert r1.headers["x-ganops-version"] == "1" and r1.headers["x-ganops-runtime"] == runtime
            assert r1.headers["x-ganops-manifest-sha256"] == client.get("/v1/model").json()["manifest_sha256"]
            answers.append(np.load(io.BytesIO(r1.content), allow_pickle=False))
            other = client.post("/v1/generate", json={"n": 6, "seed": 11, "class": "one", "format": "npy"})
            assert other.content != r1.content  # the label matters
    assert answers[0].shape == (6, 8, 8, 1) and answers[0].dtype == np.uint8
    assert np.abs(answers[0].astype(int) - answers[1].astype(int)).max() <= 1  # TorchScript and ONNX agree to 1/255


def test_formats_describe_and_health(exports):
    with client_for(exports["cdcgan"]) as client:
        png = client.post("/v1/generate", json={"n": 4, "seed": 1})
        assert png.headers["content-type"] == "image/png" and Image.open(io.BytesIO(png.content)).size == (19, 19)
        b64 = client.post("/v1/generate", json={"n": 2, "seed": 1, "format": "base64png"}).json()
        assert len(b64["images"]) == 2 and b64["seed"] == 1
        drawn = client.post("/v1/generate", json={"n": 1})
        assert int(drawn.headers["x-ganops-seed"]) >= 0  # a drawn seed is returned, so the request can be replayed
        model = client.get("/v1/model").json()
        assert model["labels"] == LABELS and model["lineage"]["ganops.dataset_md5"] == "abc"
        assert client.get("/healthz").json() == {"status": "ok"} and client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
        assert 'ganops_serve_requests_total{endpoint="/v1/generate",status="200"} 3.0' in metrics
        assert "ganops_serve_images_total 7.0" in metrics and "ganops_serve_request_seconds_bucket" in metrics


@pytest.mark.parametrize("name", [TORCHSCRIPT, ONNX, WEIGHTS, CONFIG, GOLDEN, SAMPLES, MODEL_CARD, MANIFEST])
def test_a_changed_file_stops_the_export_from_loading_naming_it(tmp_path, name):
    folder = make_export(tmp_path)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(GanopsError, match=rf"{folder}"):
        load_served(folder, "onnx")
    if name != MANIFEST:
        with pytest.raises(GanopsError, match=rf"{name} is changed \(against the sha256 in manifest.json\); refusing to serve it"):
            load_served(folder, "torchscript")


async def _ask_together(batcher: Batcher, served, seeds, n=1) -> list:
    return list(await asyncio.gather(*(batcher.run(served, latents(seed, n, served.z_dim), None) for seed in seeds)))


def _answers(served, seeds, n=1, together=True, **settings) -> tuple[list, int]:
    """Each seed's images, asked concurrently (together) or one request at a time, and how many forward passes ran."""

    async def main():
        batcher = Batcher(**settings).start()
        try:
            if together:
                return await _ask_together(batcher, served, seeds, n), batcher.batches
            return [(await _ask_together(batcher, served, [seed], n))[0] for seed in seeds], batcher.batches
        finally:
            batcher.stop()

    return asyncio.run(main())


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
@pytest.mark.parametrize("n", [1, 3])
def test_concurrent_small_requests_share_forward_passes_and_each_gets_bitwise_its_unbatched_images(exports, runtime, n):
    served = load_served(exports["dcgan"], runtime)
    assert served.batch_invariant or served.min_rows > 0, "batching is off for this export"
    seeds = list(range(16))
    together, passes = _answers(served, seeds, n)
    alone, alone_passes = _answers(served, seeds, n, together=False)
    assert passes < len(seeds) and alone_passes == len(seeds)  # one-image requests really coalesced
    for batched, single in zip(together, alone, strict=True):
        assert batched.shape[0] == n
        np.testing.assert_array_equal(batched, single)  # bitwise the answer it gets alone
    if served.batch_invariant:
        np.testing.assert_array_equal(together[0], served.forward(latents(0, n, served.z_dim), None))


def test_a_batch_waits_for_batch_wait_ms_and_stays_within_max_rows(exports):
    served = load_served(exports["dcgan"], "onnx")
    seeds = list(range(12))
    together, passes = _answers(served, seeds, 4, wait_ms=20, max_rows=16)
    assert passes == 3  # 12 requests of 4 rows, 16 rows a pass
    alone, _ = _answers(served, seeds, 4, together=False)
    for batched, single in zip(together, alone, strict=True):
        np.testing.assert_array_equal(batched, single)


def test_an_export_whose_images_depend_on_the_batch_runs_each_request_alone(exports):
    """Batching is only for exports whose golden latents give bitwise the same images alone as in a batch."""
    import dataclasses

    served = dataclasses.replace(load_served(exports["dcgan"], "onnx"), batch_invariant=False, min_rows=0)
    answers, passes = _answers(served, range(6), 2)
    assert passes == 6 and all(a.shape[0] == 2 for a in answers)


def test_a_cancelled_request_does_not_stop_the_batcher(exports):
    served = load_served(exports["dcgan"], "onnx")

    async def main():
        batcher = Batcher(wait_ms=20).start()
        try:
            cancelled = asyncio.ensure_future(batcher.run(served, latents(1, 2, served.z_dim), None))
            await asyncio.sleep(0)
            cancelled.cancel()  # its client went away before the batch ran
            answer = await batcher.run(served, latents(2, 2, served.z_dim), None)
            return answer.shape[0], batcher.alive(), cancelled.cancelled()
        finally:
            batcher.stop()

    assert asyncio.run(main()) == (2, True, True)


@pytest.mark.parametrize(
    "content, headers, field",
    [
        (b"", {"content-type": "application/json"}, "body"),
        (b"  ", {}, "body"),
        (b'{"n": 1}', {"content-type": "text/plain"}, "content-type"),
        (b"n=1", {"content-type": "application/x-www-form-urlencoded"}, "content-type"),
    ],
)
def test_an_empty_body_or_one_not_declared_json_is_a_422(exports, content, headers, field):
    with client_for(exports["dcgan"]) as client:
        r = client.post("/v1/generate", content=content, headers=headers)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == field, r.text
        assert (
            client.post("/v1/generate", content=b'{"n": 1}', headers={"content-type": "application/json; charset=utf-8"}).status_code == 200
        )


def test_other_methods_on_generate_are_405_and_counted(exports):
    with client_for(exports["dcgan"]) as client:
        r = client.get("/v1/generate")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        assert 'ganops_serve_requests_total{endpoint="/v1/generate",status="405"} 1.0' in client.get("/metrics").text
