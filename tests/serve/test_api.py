"""The API through its ASGI app (httpx): every endpoint, and every kind of bad request."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import httpx
import numpy as np
import pytest

from tests.conftest import SET_TEST_PART
from tests.serve.conftest import call, png
from tripletlab.index import EmbeddingIndex
from tripletlab.serve import Limits, ServeSettings, create_app, load_service_model
from tripletlab.serve.run import own_hosts

pytestmark = pytest.mark.slow


def _app(run, **settings):
    return create_app(lambda: load_service_model(run.path, engine="torch"),
                      ServeSettings(**settings))  # fmt: skip


async def _chunks(chunk: bytes, count: int):
    for _ in range(count):
        yield chunk


def _files(*images):
    return [("images", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images)]


def test_health_info_embed_search_compare(served_run, digits):
    app = _app(served_run)

    async def requests(client):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        info = (await client.get("/v1/info")).json()
        assert info["embedding_dim"] == 256 and info["index"]["kind"] == "exact"
        assert info["engine"] == "torch" and info["index"]["calibrated"]
        embedded = (await client.post("/v1/embed", files=_files(digits[3], digits[2]))).json()
        as_json = await client.post("/v1/embed", json={
            "images": [base64.b64encode(png(digits[3])).decode()]})  # fmt: skip
        found = (await client.post("/v1/search?k=4", files=_files(digits[3], digits[0]))).json()
        same = (await client.post("/v1/compare", files=_files(digits[3], digits[3]))).json()
        other = (await client.post("/v1/compare", files=_files(digits[3], digits[2]))).json()
        openapi = (await client.get("/openapi.json")).json()
        return info, embedded, as_json.json(), found, same, other, openapi

    _info, embedded, as_json, found, same, other, openapi = call(app, requests)
    vectors = np.array(embedded["embeddings"])
    assert vectors.shape == (2, 256) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(as_json["embeddings"][0], vectors[0], atol=1e-6)  # JSON = multipart
    zero, seven = found["results"]
    assert [n["label"] for n in zero["neighbours"]] == ["0"] * 4
    distances = [n["distance"] for n in zero["neighbours"]]
    assert distances == sorted(distances) and zero["neighbours"][0]["source"].startswith("mnist:")
    assert zero["match"]["label"] == "0" and zero["match"]["precision"] == 0.99
    assert seven["match"]["label"] == "unknown"  # a 7: run_04 saw only 0-4
    assert same["distance"] < 1e-5 and same["same"] is True and other["same"] is False
    assert {"/v1/search", "/v1/compare", "/v1/embed", "/healthz"} <= set(openapi["paths"])


def test_items_read_add_and_delete(served_run, digits, tmp_path):
    index = EmbeddingIndex.load(served_run.index)
    index.save(tmp_path / "ix")  # a copy the test may change
    app = create_app(lambda: load_service_model(served_run.path, tmp_path / "ix", "torch"),
                     ServeSettings(allow_writes=True))  # fmt: skip

    async def requests(client):
        item = (await client.get("/v1/items/7")).json()
        image = await client.get("/v1/items/7/image")
        added = (await client.post("/v1/items", files=_files(digits[0], digits[17]),
                                   data={"label": "seven"})).json()  # fmt: skip
        search = (await client.post("/v1/search?k=1", files=_files(digits[0]))).json()
        deleted = (await client.delete(f"/v1/items/{added['ids'][0]}")).json()
        return item, image, added, search, deleted

    item, image, added, search, deleted = call(app, requests)
    assert item["source"] == index.sources_of(np.array([7]))[0]
    assert image.headers["content-type"] == "image/png" and image.content[:4] == b"\x89PNG"
    assert added["label"] == "seven" and len(added["ids"]) == 2
    assert search["results"][0]["neighbours"][0]["id"] == added["ids"][0]
    assert deleted["count"] == len(index) + 1
    saved = EmbeddingIndex.load(tmp_path / "ix")  # persisted, atomically
    assert len(saved) == len(index) + 1 and saved.class_names[-1] == "seven"


def test_a_web_page_of_another_origin_may_not_post(served_run, digits, tmp_path):
    """A browser sends a form POST to another origin without asking first: any web site
    could add to the gallery of a service with --allow-writes on this machine."""
    EmbeddingIndex.load(served_run.index).save(tmp_path / "ix")
    app = create_app(lambda: load_service_model(served_run.path, tmp_path / "ix", "torch"),
                     ServeSettings(allow_writes=True))  # fmt: skip

    async def requests(client):
        answers = []
        for origin in ("https://evil.example", "null", "http://[::1", "http://test", None):
            headers = {"Origin": origin} if origin else {}
            answers.append(await client.post("/v1/items", files=_files(digits[0]),
                                             data={"label": "x"}, headers=headers))  # fmt: skip
        answers.append(await client.post("/v1/search", files=_files(digits[0]),
                                         headers={"Origin": "http://localhost:9"}))  # fmt: skip
        answers.append(await client.get("/v1/items/0", headers={"Origin": "https://a.example"}))
        return answers

    evil, null, broken, own, curl, search, read = call(app, requests)
    for refused in (evil, null, broken, search):  # a malformed Origin was a 500
        assert refused.status_code == 403 and "another origin" in refused.json()["error"]
    assert own.status_code == 200 and curl.status_code == 200 and read.status_code == 200
    assert (
        len(EmbeddingIndex.load(tmp_path / "ix")) == len(EmbeddingIndex.load(served_run.index)) + 2
    )


def test_compare_with_angular_distance_of_vectors_not_normalized(digits, tmp_path):
    """metrics.json's threshold is Euclidean: it says nothing of an angle between vectors
    that are not unit length, so compare gives the distance and no verdict."""
    from typer.testing import CliRunner

    from tripletlab.cli.main import app as cli

    run = tmp_path / "run"
    args = [
        "train",
        "--limit",
        "300",
        "--epochs",
        "1",
        "--no-report",
        "--run-dir",
        str(run),
        "--set",
        "loss.distance=angular",
        "--set",
        "model.normalize=false",
        *SET_TEST_PART,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    app = create_app(lambda: load_service_model(run, engine="torch"), ServeSettings())

    async def requests(client):
        return (await client.post("/v1/compare", files=_files(digits[3], digits[2]))).json()

    answer = call(app, requests)
    assert answer["metric"] == "angular" and 0 < answer["distance"] <= 2
    assert answer["threshold"] is None and answer["same"] is None


def test_a_source_that_is_not_utf8_is_shown_and_its_image_read(served_run, digits, tmp_path):
    """A gallery file named in Latin-1: its source in JSON with U+FFFD, its image still read
    from the file (both were a 500)."""
    index = EmbeddingIndex.load(served_run.index)
    path = os.fsdecode(str(tmp_path).encode() + b"/caf\xe9.png")
    with open(path, "wb") as handle:
        handle.write(png(digits[3]))
    vector = load_service_model(served_run.path, engine="torch").embed(digits[3:4])
    [item_id] = index.add(vector, np.zeros(1, dtype=np.int64), [path])
    index.save(tmp_path / "ix")
    app = create_app(lambda: load_service_model(served_run.path, tmp_path / "ix", "torch"),
                     ServeSettings())  # fmt: skip

    async def requests(client):
        search = await client.post("/v1/search?k=1", files=_files(digits[3]))
        return search, await client.get(f"/v1/items/{item_id}"), await client.get(
            f"/v1/items/{item_id}/image")  # fmt: skip

    search, item, image = call(app, requests)
    shown = f"{tmp_path}/caf\ufffd.png"
    assert search.status_code == 200 and item.status_code == 200, search.text
    assert search.json()["results"][0]["neighbours"][0]["source"] == shown
    assert item.json()["source"] == shown
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"


def test_a_change_that_cannot_be_saved_is_undone(served_run, digits, tmp_path, monkeypatch):
    """A full disk, say: the client hears the change failed, and the service answers from the
    gallery its folder still holds (no item half added, none gone that is still saved)."""
    from tripletlab.index import storage

    EmbeddingIndex.load(served_run.index).save(tmp_path / "ix")
    app = create_app(lambda: load_service_model(served_run.path, tmp_path / "ix", "torch"),
                     ServeSettings(allow_writes=True))  # fmt: skip

    def full_disk(self, path):
        raise OSError("No space left on device")

    async def requests(client):
        before = (await client.get("/v1/info")).json()["index"]["count"]
        monkeypatch.setattr(storage.Items, "save", full_disk)
        added = await client.post("/v1/items", files=_files(digits[0]), data={"label": "seven"})
        deleted = await client.delete("/v1/items/7")
        monkeypatch.undo()
        after = (await client.get("/v1/info")).json()["index"]["count"]
        item = await client.get("/v1/items/7")
        search = (await client.post("/v1/search?k=1", files=_files(digits[0]))).json()
        return before, added, deleted, after, item, search

    before, added, deleted, after, item, search = call(app, requests)
    for failed in (added, deleted):
        assert failed.status_code == 500
        assert "could not be saved, so it was undone: No space left" in failed.json()["error"]
    assert after == before == len(EmbeddingIndex.load(tmp_path / "ix"))
    assert item.status_code == 200
    assert search["results"][0]["neighbours"][0]["id"] < before  # not the image added


def test_a_change_after_an_undone_one_goes_to_the_gallery_served(
    served_run, digits, tmp_path, monkeypatch
):
    """Two additions at once, the first not saved: the second went into the gallery object
    the first had changed (now replaced), so the 'undone' item was saved with it and the
    second was never searchable."""
    from tripletlab.index import storage

    EmbeddingIndex.load(served_run.index).save(tmp_path / "ix")
    app = create_app(lambda: load_service_model(served_run.path, tmp_path / "ix", "torch"),
                     ServeSettings(allow_writes=True))  # fmt: skip
    save, calls = storage.Items.save, []

    def first_fails(self, path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError("No space left on device")
        return save(self, path)

    async def requests(client):
        monkeypatch.setattr(storage.Items, "save", first_fails)
        adds = [client.post("/v1/items", files=_files(digits[i]), data={"label": label})
                for i, label in ((0, "A"), (17, "B"))]  # fmt: skip
        answers = await asyncio.gather(*adds)
        monkeypatch.undo()
        served = (await client.get("/v1/info")).json()["index"]["count"]
        return answers, served

    answers, served = call(app, requests)
    assert sorted(a.status_code for a in answers) == [200, 500]
    kept = next(a.json() for a in answers if a.status_code == 200)
    saved = EmbeddingIndex.load(tmp_path / "ix")
    assert served == len(saved) == len(EmbeddingIndex.load(served_run.index)) + 1
    assert saved.class_names[-1] == kept["label"]


@pytest.mark.parametrize(
    ("send", "status", "message"),
    [
        (lambda: {"files": [("images", ("x.txt", b"hello", "text/plain"))]}, 422, "not an image"),
        (
            lambda: {
                "files": [
                    ("images", ("x.png", png(np.zeros((28, 28), np.uint8))[:30], "image/png"))
                ]
            },
            422,
            "image 0",
        ),
        (
            lambda: {"content": b"{bad", "headers": {"content-type": "application/json"}},
            400,
            "malformed JSON",
        ),
        (lambda: {"json": {"images": ["%%%"]}}, 400, "not valid base64"),
        (lambda: {"json": {"images": [1]}}, 400, "not a base64 string"),
        (lambda: {"json": [1, 2]}, 400, "JSON object"),
        (lambda: {"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "multipart"),
        (lambda: {"json": {"images": []}}, 400, "no image"),
        (lambda: {"json": {"images": ["aGk="] * 5}}, 413, "at most 4 images"),
        (lambda: {"files": _files(*[np.zeros((28, 28), np.uint8)] * 9)}, 413, "at most 4 images"),
        (
            lambda: {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}},
            400,
            "malformed JSON",
        ),
        (
            lambda: {
                "content": _chunks(b"x" * 65536, 40),  # chunked: no length declared
                "headers": {"content-type": "application/json"},
            },
            413,
            "request body over",
        ),
    ],
)
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(served_run, send, status, message):
    app = _app(served_run, limits=Limits(max_images=4, max_body=2_000_000), max_queue=16)
    response = call(app, lambda client: client.post("/v1/embed", **send()))
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_more_bad_requests(served_run, digits):
    limits = Limits(max_bytes=2000, max_pixels=10_000, max_k=50, max_body=150_000)
    app = _app(served_run, limits=limits)
    big = png(np.random.default_rng(0).integers(0, 255, (120, 120), dtype=np.uint8))

    async def requests(client):
        return [
            await client.post("/v1/search?k=0", files=_files(digits[0])),
            await client.post("/v1/search?k=51", files=_files(digits[0])),
            await client.post("/v1/search?k=ten", files=_files(digits[0])),
            await client.post(
                "/v1/search",
                content=b'{"images": [], "k": 1e400}',
                headers={"content-type": "application/json"},
            ),
            await client.post("/v1/compare", files=_files(digits[0])),
            await client.get("/v1/items/99999999"),
            await client.get("/v1/items/abc"),
            await client.delete("/v1/items/3"),
            await client.post("/v1/embed", files=[("images", ("b.png", big, "image/png"))]),
            await client.post(
                "/v1/embed", content=b"x" * 200_000, headers={"content-type": "application/json"}
            ),
            await client.get("/v1/nowhere"),
        ]

    responses = call(app, requests)
    expected = [(422, "between 1 and 50"), (422, "between 1 and 50"), (422, "whole number"),
                (422, "whole number"),
                (400, "exactly 2"), (404, "no item"), (422, "item_id"), (403, "--allow-writes"),
                (413, "larger than 2,000 bytes"), (413, "request body over"),
                (404, "Not Found")]  # fmt: skip
    for response, (status, message) in zip(responses, expected, strict=True):
        assert response.status_code == status, response.text
        assert message in response.json()["error"], response.text
        assert set(response.json()) == {"error"}
    many_pixels = Limits(max_pixels=100)
    response = call(_app(served_run, limits=many_pixels),
                    lambda client: client.post("/v1/embed", files=_files(digits[0])))  # fmt: skip
    assert response.status_code == 422 and "pixels is more than 100" in response.json()["error"]


def test_a_failing_model_is_a_500_with_an_error_id_and_the_service_goes_on(served_run, digits):
    model = load_service_model(served_run.path, engine="torch")
    real, state = model.embed, {"calls": 0}

    def flaky(images):
        state["calls"] += 1
        if state["calls"] == 1:
            raise RuntimeError("out of memory")
        return real(images)

    model.embed = flaky
    app = create_app(lambda: model, ServeSettings(max_wait_ms=0))

    async def requests(client):
        return [await client.post("/v1/embed", files=_files(digits[0])) for _ in range(2)]

    failed, fine = call(app, requests)
    assert failed.status_code == 500 and "error id" in failed.json()["error"]
    assert fine.status_code == 200


def test_not_ready_and_failed_loads_answer_503():
    def broken():
        raise FileNotFoundError("no run here")

    app = create_app(broken)

    async def requests(client):
        return await client.get("/readyz"), await client.get("/healthz")

    ready, alive = call(app, requests)
    assert ready.status_code == 503 and "could not be loaded" in ready.json()["error"]
    assert alive.status_code == 200
    assert json.loads(ready.text)["error"].endswith("no run here")


@pytest.mark.parametrize("bound", ["127.0.0.2", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1", "127.1"])
def test_every_loopback_address_accepts_only_its_own_host_names(bound):
    """Only 127.0.0.1, localhost and ::1 as written were checked: --host 127.0.0.2 accepted
    any Host header, which lets a web page reach it through a DNS name of its own."""

    app = create_app(lambda: None, hosts=own_hosts(bound))  # /healthz needs no model
    netloc = f"[{bound}]:8000" if ":" in bound else f"{bound}:8000"

    async def requests():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [(await client.get("/healthz", headers={"host": host})).status_code
                    for host in ("evil.example", netloc, "localhost:8000")]  # fmt: skip

    assert asyncio.run(requests()) == [400, 200, 200]
    assert own_hosts("0.0.0.0") is None and own_hosts("192.168.1.2") is None


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A run trained with a classifier (cross-entropy), 3,000 images."""
    from typer.testing import CliRunner

    from tripletlab.cli.main import app
    from tripletlab.runs import RunDir

    folder = tmp_path_factory.mktemp("classifier") / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--loss",
            "cross-entropy",
            "--limit",
            "3000",
            "--epochs",
            "2",
            "--no-report",
            "--run-dir",
            str(folder),
            *SET_TEST_PART,
        ],
    )
    assert result.exit_code == 0, result.output
    return RunDir(folder)


def test_predict_answers_the_class_or_says_the_run_has_no_classifier(
    classifier_run, served_run, digits
):
    async def requests(client):
        info = (await client.get("/v1/info")).json()
        found = await client.post("/v1/predict?top=3", files=_files(digits[3], digits[0]))
        bad_top = await client.post("/v1/predict?top=11", files=_files(digits[3]))
        return info, found, bad_top

    info, found, bad_top = call(_app(classifier_run), requests)
    assert info["classes"] == [str(d) for d in range(10)]
    zero, seven = found.json()["results"]
    assert (zero["label"], seven["label"]) == ("0", "7")
    assert zero["probability"] > 0.5 and zero["top"][0]["label"] == "0"
    assert len(zero["top"]) == 3
    assert bad_top.status_code == 422 and "top must be" in bad_top.json()["error"]

    async def without(client):
        return await client.post("/v1/predict", files=_files(digits[3]))

    refused = call(_app(served_run), without)
    assert refused.status_code == 409 and "no classifier" in refused.json()["error"]


def test_an_item_image_is_read_off_the_model_thread(served_run, digits, monkeypatch):
    """Reading an item's image ran in the model's one thread: a slow read (a large file, or
    MNIST fetched on first use) held up every embedding. Here the read waits for an embedding
    to finish, which could never happen on that thread."""
    import threading

    from tripletlab.serve import items

    embedded, read = threading.Event(), items.read_image

    def slow_read(*args):
        assert embedded.wait(30), "the embedding waited for the image read"
        return read(*args)

    monkeypatch.setattr(items, "read_image", slow_read)
    app = _app(served_run)

    async def requests(client):
        image = asyncio.create_task(client.get("/v1/items/7/image"))
        await asyncio.sleep(0.2)  # the read has started
        embedding = await client.post("/v1/embed", files=_files(digits[0]))
        embedded.set()
        return embedding, await image

    embedding, image = call(app, requests)
    assert embedding.status_code == 200 and image.status_code == 200
