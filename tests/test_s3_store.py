"""The feature store on object storage, for real: LanceDB against a local S3-compatible server (moto in server mode,
a real HTTP S3 API on loopback), configured the way a deployment is, through the environment LanceDB's object
store reads (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP).

The full path runs against `s3://bucket/prefix`: create a dataset (trainer service and CLI), encode it (encoder
service), train BC, evaluate live, list datasets and runs. Run records stay on local disk (`--runs-dir` /
VJEPA_ROBOT_RUNS): they are files (JSON, checkpoints, GIFs), not LanceDB tables."""

from __future__ import annotations

import logging

import pytest

moto_server = pytest.importorskip("moto.server", reason="moto[server] (the test extra) provides the local S3 server")

BUCKET = "vjepa-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on a free loopback port, a bucket in it, and the environment LanceDB reads for it."""
    import os

    import boto3
    from _servers import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per S3 request otherwise
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # module scope: dataset worker processes inherit it, as in a container
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test-key",
            aws_secret_access_key="test-secret",
        )
        client.create_bucket(Bucket=BUCKET)
        yield {"endpoint": endpoint, "client": client, "uri": f"s3://{BUCKET}/store"}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def keys(s3, prefix: str) -> list[str]:
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_store_basics_on_s3(s3, tmp_path):
    """The Store opens an s3:// URI without touching the local disk, and sees another handle's writes."""
    from services.common.store import Store

    uri = f"s3://{BUCKET}/basics"
    a, b = Store(uri), Store(uri)
    assert a.list_datasets() == []
    a.put_dataset_meta("ds", "running", {"episodes": 1})
    b.put_dataset_meta("ds", "ready", {"episodes": 1})  # one row per name: merge_insert on the bucket
    assert [m["status"] for m in a.list_datasets()] == ["ready"]
    assert any(k.startswith("basics/datasets.lance/") for k in keys(s3, "basics/"))
    assert not (tmp_path / "s3:").exists() and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_dataset_encode_bc_eval_runs_on_s3(s3, tmp_path, tiny_encoder):
    """Both services with VJEPA_ROBOT_STORE=s3://..., driven over HTTP; the CLI reads the same bucket."""
    import numpy as np
    from _servers import serve_app
    from typer.testing import CliRunner

    from services.common.store import Store
    from services.encoder.app import create_app as create_encoder_app
    from services.encoder.settings import EncoderSettings
    from services.trainer.app import TrainerSettings
    from services.trainer.app import create_app as create_trainer_app
    from vjepa_robot.cli import app as cli
    from vjepa_robot_client import EncoderClient, TrainerClient

    uri = s3["uri"]
    runs = tmp_path / "runs"
    enc_app = create_encoder_app(EncoderSettings(store=uri, max_batch=32, max_wait_ms=5), encoder=tiny_encoder)
    with serve_app(enc_app) as enc_url:
        tr_app = create_trainer_app(TrainerSettings(store=uri, runs=str(runs), encoder_url=enc_url))
        with serve_app(tr_app) as tr_url, TrainerClient(tr_url) as tr:
            tr.create_dataset("s3ds", expert="jacobian", episodes=3, steps=24, image_size=32, workers=1)
            ds = tr.wait_dataset("s3ds", progress=False, timeout=120, poll_interval=0.2)
            assert ds.status.value == "ready" and ds.episodes == 3, ds

            run_id = tr.train_bc("s3ds", features="vjepa2", epochs=3, batch_size=32)  # encodes through the encoder
            run = tr.wait(run_id, progress=False, timeout=180, poll_interval=0.2)
            assert run.status.value == "succeeded", run.error

            queued = tr.evaluate(run_id, episodes=2, steps=16, parallel_envs=2, image_size=32, gif_episodes=0)
            ev = tr.wait_eval(run_id, queued.eval_id, progress=False, timeout=180, poll_interval=0.2)
            assert ev.status.value == "succeeded", ev.error
            assert len(ev.episodes) == 2

            assert run_id in {r.run_id for r in tr.runs()}
            assert "s3ds" in {d.name for d in tr.datasets()}
            encoder_id = EncoderClient(enc_url).info().encoder_id

    # what landed where: tables in the bucket, run records on local disk, nothing under a local "s3:" directory
    store = Store(uri)
    names = set(store.table_names())
    assert {"datasets", "steps__s3ds", f"emb__s3ds__{encoder_id}"} <= names
    episode, step, emb = store.read_embeddings("s3ds", encoder_id)
    assert emb.shape[0] == 3 * 24 and np.isfinite(emb).all() and episode[-1] == 2 and step[-1] == 23
    prefix = uri.split(f"s3://{BUCKET}/", 1)[1]
    assert any(k.startswith(f"{prefix}/steps__s3ds.lance/") for k in keys(s3, prefix))
    assert (runs / run_id).is_dir()

    # the CLI against the same bucket: list, show, and a second dataset + a state-feature BC run in process
    result = CliRunner().invoke(cli, ["datasets", "list", "--store", uri, "--json"])
    assert result.exit_code == 0, result.output
    assert "s3ds" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "datasets",
            "create",
            "cli-ds",
            "--episodes",
            "2",
            "--steps",
            "20",
            "--image-size",
            "0",
            "--workers",
            "1",
            "--store",
            uri,
        ],
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        cli,  # --json: the whole run record, not the summary line
        [
            "--json",
            "train",
            "bc",
            "cli-ds",
            "--features",
            "state",
            "--epochs",
            "2",
            "--store",
            uri,
            "--runs-dir",
            str(runs),
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"succeeded"' in result.output
    assert Store(uri).get_dataset_meta("cli-ds")["status"] == "ready"


def _append_rows(uri: str, writer: int, count: int) -> None:
    import lancedb
    import pyarrow as pa

    table = lancedb.connect(uri).open_table("appends")
    for i in range(count):
        table.add(pa.table({"writer": [writer], "i": [i]}))


@pytest.mark.slow
def test_concurrent_appends_from_two_processes_lose_nothing(s3):
    """Lance commits a new version with a conditional PUT (If-None-Match) on S3: two processes appending to one
    table at once must both land every row (a lost commit would drop rows). moto implements the condition, as AWS S3,
    MinIO and R2 do; a store without it needs the DynamoDB commit store (s3+ddb://, see deploy/README.md)."""
    import multiprocessing as mp

    import lancedb
    import pyarrow as pa

    uri = f"s3://{BUCKET}/concurrent"
    lancedb.connect(uri).create_table("appends", schema=pa.schema([("writer", pa.int64()), ("i", pa.int64())]))
    procs = [mp.get_context("spawn").Process(target=_append_rows, args=(uri, w, 10)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    table = lancedb.connect(uri).open_table("appends")
    rows = table.to_arrow().to_pylist()
    assert sorted((r["writer"], r["i"]) for r in rows) == [(w, i) for w in range(2) for i in range(10)]
    assert table.version == 1 + 20  # every append its own version, none overwritten
