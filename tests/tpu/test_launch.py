"""Launch scripts for Cloud TPU VMs (their --dry-run paths print the gcloud commands) and the
multi-host helpers on one host."""

import shutil
import subprocess
from pathlib import Path

import grain
import jax
import numpy as np
import pytest

from tpu import distributed, logical
from tpu import mesh as tpu_mesh

LAUNCH = Path(__file__).resolve().parents[2] / "tpu" / "launch"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the launch scripts are bash")


def _run(script, *args, env=None):
    return subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def test_create_slice_dry_run():
    out = _run("create_slice.sh", "--name", "vl", "--zone", "us-east5-a", "--type", "v5p-16", "--spot", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("+ gcloud compute tpus tpu-vm create vl --accelerator-type v5p-16 --version "
                                  "v2-alpha-tpuv5 --spot --zone us-east5-a")


def test_install_and_start_run_on_every_worker():
    out = _run("install.sh", "--name", "vl", "--zone", "z", "--repo", "https://example.org/vilasr.git", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "--worker=all" in out.stdout and "pip\\ install\\ -q\\ -e\\ \\'.\\[tpu\\]\\'" in out.stdout
    out = _run("start.sh", "--name", "vl", "--zone", "z", "--dry-run", "--", "vilasr", "train", "cold-start",
               "--out", "gs://bucket/run")
    assert out.returncode == 0, out.stderr
    assert "--worker=all" in out.stdout and "nohup\\ .venv/bin/vilasr\\ train\\ cold-start\\ --out\\ gs://bucket/run" \
        in out.stdout


def test_resume_recreates_a_preempted_slice_and_restarts_the_run():
    out = _run("resume.sh", "--name", "vl", "--zone", "z", "--type", "v6e-8", "--repo", "https://e/v.git",
               "--dry-run", "--", "vilasr", "train", "cold-start", "--out", "gs://b/r")
    assert out.returncode == 0, out.stderr
    steps = [line.split()[5] for line in out.stdout.splitlines() if line.startswith("+ gcloud")]
    assert steps == ["delete", "create", "ssh", "ssh"]   # delete what is left, create, install, start
    assert "v2-alpha-tpuv6e" in out.stdout
    ready = _run("resume.sh", "--name", "vl", "--zone", "z", "--type", "v6e-8", "--repo", "r", "--dry-run", "--",
                 "vilasr", env={"ASSUME_STATE": "READY", "PATH": "/usr/bin:/bin"})
    assert ready.returncode == 0 and "nothing to do" in ready.stdout and "+ gcloud" not in ready.stdout


@pytest.mark.parametrize("script, args, message", [
    ("create_slice.sh", ["--name", "vl", "--zone", "z"], "--type is required"),
    ("create_slice.sh", ["--name", "vl", "--zone", "z", "--type", "v9-8"], "unknown accelerator type"),
    ("start.sh", ["--name", "vl", "--zone", "z", "--dry-run"], "no command after --"),
    ("install.sh", ["--zone", "z"], "--name is required"),
])
def test_bad_launch_arguments_fail_with_one_line(script, args, message):
    out = _run(script, *args)
    assert out.returncode == 2 and message in out.stderr and out.stderr.startswith("error: ")


def test_one_host_needs_no_coordinator_and_reads_every_row():
    hosts = distributed.initialize()
    assert hosts.process_count == 1 and hosts.global_devices == len(jax.devices())
    ds = grain.MapDataset.range(10)
    assert list(distributed.host_rows(ds)) == list(range(10))
    assert list(distributed.host_rows(ds, index=1, count=3)) == [1, 4, 7]   # each of 3 hosts: 3 rows


def test_global_array_shards_the_host_rows():
    mesh = tpu_mesh.make_mesh(tpu_mesh.MeshConfig(data=2, fsdp=4), jax.devices()[:8])
    sharding = logical.named_sharding(mesh, ("batch", None), (("batch", ("data", "fsdp")),))
    x = distributed.global_array(np.arange(32).reshape(8, 4), sharding)
    assert x.sharding == sharding and x.addressable_shards[0].data.shape == (1, 4)
