"""Test-wide set-up.

* Several host CPU devices (set before JAX starts), so mesh tests shard for real; JAX runs on the
  CPU even when libtpu is installed (tests/tpu/test_plan.py compiles for TPU topologies with it).
* One persistent XLA compilation cache for the session (a fresh temporary folder, inherited by
  the command-line runs the tests start): the many tiny models compile the same programs, and a
  CLI subprocess then loads them instead of compiling again.
* One shared way to build a tiny random transformers Qwen2.5-VL: the trusted reference every
  parity test compares with (`hf_reference` fixture).
"""

from __future__ import annotations

import os

HOST_DEVICES = 8
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={HOST_DEVICES}").strip()

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="vilasr-test-xla-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

from tpu.topology import quiet_host_defaults

quiet_host_defaults()   # with libtpu installed (the test extra) and no chip: JAX on CPU, no libtpu init noise

import pytest

from browser import browser  # noqa: F401  (the headless-Chromium fixture, for every HTML page test)


class HFReference:
    """Builds, loads and runs tiny random transformers Qwen2.5-VL models (PyTorch, float32, eager)."""

    def __init__(self, torch, transformers):
        self.torch, self.transformers = torch, transformers

    def build(self, cfg, seed: int = 0):
        """A random model for our config `cfg` with every parameter (norms and biases too) randomised."""
        torch = self.torch
        torch.manual_seed(seed)
        hf_cfg = self.transformers.Qwen2_5_VLConfig(**cfg.to_hf_dict(), attn_implementation="eager")
        model = self.transformers.Qwen2_5_VLForConditionalGeneration(hf_cfg).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name or "ln_q" in name:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.05 * torch.randn_like(p))
        return model

    def load(self, path):
        return self.transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
            path, attn_implementation="eager", dtype=self.torch.float32).eval()


@pytest.fixture(scope="session")
def hf_reference():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return HFReference(torch, transformers)
