"""Hugging Face checkpoint import/export, config.json handling, and typed errors for bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from tpu import logical  # noqa: E402
from vilasr import CheckpointError, ConfigError  # noqa: E402
from vilasr.model import Qwen25VL, Qwen25VLConfig, TextConfig, VisionConfig  # noqa: E402

TOL = 1e-4
CFG = Qwen25VLConfig.preset("tiny")


def _inputs(cfg, seed=0):
    rs = np.random.RandomState(seed)
    grid = np.array([[1, 8, 12]])
    pixels = rs.randn(int(grid.prod()), cfg.vision.patch_dim).astype(np.float32)
    n = int(grid.prod()) // cfg.vision.merge_unit
    ids = np.array([[1, 2, 3, cfg.vision_start_token_id] + [cfg.image_token_id] * n
                    + [cfg.vision_end_token_id, 4, 5, 6]])
    return ids, pixels, grid


def _hf_logits(model, cfg, ids, pixels, grid):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), pixel_values=torch.tensor(pixels),
                     image_grid_thw=torch.tensor(grid),
                     mm_token_type_ids=torch.tensor((ids == cfg.image_token_id).astype(np.int64))).logits.numpy()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, hf_reference):
    """A random transformers checkpoint on disk, its logits, and our model loaded from it."""
    path = tmp_path_factory.mktemp("hf_tiny")
    hf = hf_reference.build(CFG)
    hf.save_pretrained(path)
    ids, pixels, grid = _inputs(CFG)
    ref = _hf_logits(hf, CFG, ids, pixels, grid)
    return path, ref, Qwen25VL.from_pretrained(path)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _params(model):
    return {".".join(map(str, k)): np.asarray(v.get_value()) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


# ----------------------------------------------------------------------------- export
def test_save_pretrained_loads_in_transformers(saved, tmp_path, hf_reference):
    path, ref, ours = saved
    ids, pixels, grid = _inputs(CFG)
    assert np.abs(np.asarray(ours(ids, pixels, grid)) - ref).max() <= TOL
    ours.save_pretrained(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors"]
    reloaded = hf_reference.load(tmp_path / "out")
    err = np.abs(_hf_logits(reloaded, CFG, ids, pixels, grid) - ref).max()
    print(f"save_pretrained -> transformers max abs err {err:.2e}")
    assert err <= TOL


def test_sharded_new_layout_roundtrip(saved, tmp_path, hf_reference):
    path, ref, ours = saved
    out = tmp_path / "sharded"
    ours.save_pretrained(out, max_shard_size="1MB", layout="new", config_layout="nested")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 2 and set(index["weight_map"].values()) == set(shards)
    assert "model.language_model.embed_tokens.weight" in index["weight_map"]
    ids, pixels, grid = _inputs(CFG)
    assert np.abs(_hf_logits(hf_reference.load(out), CFG, ids, pixels, grid) - ref).max() <= TOL
    again = Qwen25VL.from_pretrained(out)
    a, b = _params(ours), _params(again)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_tied_embeddings_roundtrip(tmp_path, hf_reference):
    cfg = Qwen25VLConfig(
        vision=VisionConfig(depth=2, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64,
                            fullatt_block_indexes=(1,), window_size=56),
        text=TextConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=1, mrope_section=(2, 3, 3)),
        image_token_id=299, video_token_id=298, vision_start_token_id=297, vision_end_token_id=296,
        bos_token_id=295, eos_token_ids=(294,), pad_token_id=295, tie_word_embeddings=True)
    ours = Qwen25VL(cfg, rngs=nnx.Rngs(7))
    assert ours.lm_head is None
    ours.save_pretrained(tmp_path)
    hf = hf_reference.load(tmp_path)
    assert hf.config.tie_word_embeddings
    ids, pixels, grid = _inputs(cfg, seed=1)
    err = np.abs(_hf_logits(hf, cfg, ids, pixels, grid) - np.asarray(ours(ids, pixels, grid))).max()
    assert err <= TOL
    assert Qwen25VL.from_pretrained(tmp_path).config == cfg


# ----------------------------------------------------------------------------- import variants
def test_new_layout_bf16_checkpoint(saved, tmp_path):
    """transformers >= 4.52 names (`model.language_model.*`, `model.visual.*`) stored in bfloat16."""
    path, _, ours = saved
    tensors = load_file(str(path / "model.safetensors"))
    renamed = {}
    for k, v in tensors.items():
        if k.startswith("visual."):
            k = "model." + k
        elif k.startswith("model."):
            k = "model.language_model." + k[len("model."):]
        renamed[k] = v.to(torch.bfloat16)
    out = _copy(path, tmp_path / "new")
    (out / "model.safetensors").unlink()
    half = len(renamed) // 2
    keys = sorted(renamed)
    save_file({k: renamed[k] for k in keys[:half]}, str(out / "model-00001-of-00002.safetensors"), {"format": "pt"})
    save_file({k: renamed[k] for k in keys[half:]}, str(out / "model-00002-of-00002.safetensors"), {"format": "pt"})
    weight_map = {k: f"model-0000{1 + (i >= half)}-of-00002.safetensors" for i, k in enumerate(keys)}
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = Qwen25VL.from_pretrained(out, param_dtype=jnp.bfloat16)
    a, b = _params(ours), _params(loaded)
    for k in a:
        assert b[k].dtype == jnp.bfloat16
        np.testing.assert_array_equal(a[k].astype(jnp.bfloat16), b[k], err_msg=k)


def test_from_pretrained_places_shards_on_a_mesh(saved):
    path, ref, _ = saved
    mesh = jax.make_mesh((len(jax.devices()),), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
    rules = (("embed", "fsdp"), ("vision_embed", "fsdp"), ("vocab", None))
    model = Qwen25VL.from_pretrained(path, mesh=mesh, rules=rules)
    emb = model.embed.get_value()
    assert isinstance(emb.sharding, jax.sharding.NamedSharding)
    assert emb.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
    # a stacked parameter: its `layers` axis whole on every device, the rest sharded by its names
    gate = model.layers.mlp.gate.kernel.get_value()
    assert gate.shape[0] == CFG.text.num_hidden_layers
    assert tuple(gate.sharding.spec)[:2] == (None, "fsdp")
    assert gate.addressable_shards[0].data.shape == (CFG.text.num_hidden_layers, 128 // 8, 384)
    ids, pixels, grid = _inputs(CFG)
    assert np.abs(np.asarray(model(ids, pixels, grid)) - ref).max() <= TOL


def test_from_pretrained_accepts_a_mesh_with_explicit_axes(saved):
    # jax.make_mesh's default axis type is Explicit; the model needs Auto axes (GSPMD placement)
    path, ref, _ = saved
    mesh = jax.make_mesh((len(jax.devices()),), ("fsdp",))
    assert mesh.axis_types == (jax.sharding.AxisType.Explicit,)
    rules = (("embed", "fsdp"), ("vision_embed", "fsdp"), ("vocab", None))
    model = Qwen25VL.from_pretrained(path, mesh=mesh, rules=rules)
    emb = model.embed.get_value()
    assert emb.sharding.mesh.axis_types == (jax.sharding.AxisType.Auto,)
    assert emb.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp")
    ids, pixels, grid = _inputs(CFG)
    with jax.set_mesh(logical.auto_axes(mesh)), nnx.logical_axis_rules(rules):
        assert np.abs(np.asarray(model(ids, pixels, grid)) - ref).max() <= TOL


def test_every_parameter_has_logical_axis_names(saved):
    _, _, ours = saved
    known = {"vocab", "embed", "mlp", "heads", "kv_heads", "kv", "norm", "vision_patch", "vision_embed",
             "vision_mlp", "vision_heads", "vision_kv", "vision_merge", "vision_merge_out", None}
    for path, var in nnx.to_flat_state(nnx.state(ours, nnx.Param)):
        names = var.get_metadata()["out_sharding"]
        assert len(names) == var.get_value().ndim, path
        # the scanned layers' parameters are stacked on a leading `layers` axis, and only they
        stacked = path[0] == "layers" or path[:2] == ("visual", "blocks")
        assert (names[0] == "layers") == stacked, (path, names)
        assert set(names[stacked:]) <= known, (path, names)
    # `layers` has no rule by default: the stacked axis stays whole on every device
    names = ours.layers.mlp.gate.kernel.get_metadata()["out_sharding"]
    rules = (("embed", "fsdp"), ("mlp", "tensor"))
    assert logical.to_pspec(names, rules) == jax.sharding.PartitionSpec(None, "fsdp", "tensor")


# ----------------------------------------------------------------------------- errors
def test_missing_tensor_names_it(saved, tmp_path):
    path, _, _ = saved
    out = _copy(path, tmp_path / "missing")
    tensors = load_file(str(out / "model.safetensors"))
    del tensors["model.layers.1.self_attn.k_proj.bias"]
    save_file(tensors, str(out / "model.safetensors"), {"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias.*missing"):
        Qwen25VL.from_pretrained(out)


def test_shape_mismatch_names_tensor_and_shapes(saved, tmp_path):
    path, _, _ = saved
    out = _copy(path, tmp_path / "shape")
    cfg = json.loads((out / "config.json").read_text())
    cfg["text_config"]["intermediate_size"] = 256
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"'model\.layers\.0\.mlp\.down_proj\.weight' has shape \(128, 384\).*expects \(128, 256\)"):
        Qwen25VL.from_pretrained(out)


@pytest.mark.parametrize("edit, error, pattern", [
    (lambda c: c["text_config"].update(num_attention_heads=5), ConfigError, "not divisible by num_attention_heads"),
    (lambda c: c["text_config"].update(num_key_value_heads=3), ConfigError, "not a multiple of num_key_value_heads"),
    (lambda c: c["text_config"]["rope_parameters"].update(mrope_section=[4, 4, 4]), ConfigError,
     "must sum to head_dim/2 = 16"),
    (lambda c: c["text_config"]["rope_parameters"].update(rope_type="yarn", factor=4.0), ConfigError,
     "unsupported rope type 'yarn'"),
    (lambda c: c.update(model_type="qwen2_vl"), ConfigError, "only 'qwen2_5_vl'"),
    (lambda c: c["vision_config"].update(fullatt_block_indexes=[1, 9]), ConfigError, r"\[9\] are outside"),
    (lambda c: c["text_config"].pop("vocab_size"), ConfigError, "missing the required field 'vocab_size'"),
    (lambda c: c.update(image_token_id=99999), ConfigError, "image_token_id 99999 is outside the vocabulary"),
])
def test_bad_config_raises_config_error(saved, tmp_path, edit, error, pattern):
    path, _, _ = saved
    out = _copy(path, tmp_path / "cfg")
    cfg = json.loads((out / "config.json").read_text())
    edit(cfg)
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(error, match=pattern):
        Qwen25VL.from_pretrained(out)


def test_missing_files_raise_checkpoint_error(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(CheckpointError, match="not a directory"):
        Qwen25VL.from_pretrained(tmp_path / "nope")
    no_cfg = _copy(path, tmp_path / "no_cfg")
    (no_cfg / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        Qwen25VL.from_pretrained(no_cfg)
    no_weights = _copy(path, tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        Qwen25VL.from_pretrained(no_weights)
    bad_index = _copy(path, tmp_path / "bad_index")
    (bad_index / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors.*missing"):
        Qwen25VL.from_pretrained(bad_index)


# ----------------------------------------------------------------------------- config
RELEASED_7B_CONFIG = {  # the flat layout of Qwen/Qwen2.5-VL-7B-Instruct's config.json
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
    "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 128000, "max_window_layers": 28,
    "model_type": "qwen2_5_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.41.2",
    "use_cache": True, "use_sliding_window": False,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                      "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064,
}


def test_released_flat_config_equals_7b_preset():
    cfg = Qwen25VLConfig.from_hf_dict(RELEASED_7B_CONFIG)
    assert cfg == Qwen25VLConfig.preset("7b", eos_token_ids=(151645,), pad_token_id=None)
    v, t = cfg.vision, cfg.text
    assert (v.depth, v.hidden_size, v.intermediate_size, v.num_heads, v.out_hidden_size) == (32, 1280, 3420, 16, 3584)
    assert (v.fullatt_block_indexes, v.window_size) == ((7, 15, 23, 31), 112)
    assert (t.num_hidden_layers, t.hidden_size, t.intermediate_size, t.num_attention_heads,
            t.num_key_value_heads, t.vocab_size, t.rope_theta, t.mrope_section) == (
        28, 3584, 18944, 28, 4, 152064, 1e6, (16, 24, 24))
    # both layouts written by us are read back identically, and by transformers with the same values
    for layout in ("flat", "nested"):
        d = cfg.to_hf_dict(layout)
        assert Qwen25VLConfig.from_hf_dict(d) == cfg
        hf = transformers.Qwen2_5_VLConfig(**d)
        assert Qwen25VLConfig.from_hf_dict(hf.to_dict()) == cfg


def test_presets():
    b3 = Qwen25VLConfig.preset("3b")
    assert (b3.text.hidden_size, b3.text.num_hidden_layers, b3.text.num_attention_heads,
            b3.text.num_key_value_heads, b3.text.intermediate_size, b3.vision.out_hidden_size,
            b3.tie_word_embeddings) == (2048, 36, 16, 2, 11008, 2048, True)
    tiny = Qwen25VLConfig.preset("tiny")
    assert (tiny.image_token_id, tiny.video_token_id, tiny.vision_start_token_id, tiny.vision_end_token_id,
            tiny.eos_token_ids, tiny.tie_word_embeddings) == (2037, 2038, 2035, 2036, (2034, 2032), False)
    assert tiny.text.head_dim == 32 and tiny.text.mrope_section == (4, 6, 6)
    n = nnx.eval_shape(lambda: Qwen25VL(tiny)).num_params()
    assert 1e6 < n < 5e6
    assert 8.2e9 < nnx.eval_shape(lambda: Qwen25VL(Qwen25VLConfig.preset("7b"))).num_params() < 8.4e9
    with pytest.raises(ConfigError, match="unknown preset"):
        Qwen25VLConfig.preset("13b")
    with pytest.raises(ConfigError, match="out_hidden_size 64 must equal text hidden_size 128"):
        tiny.replace(vision=VisionConfig(depth=1, hidden_size=64, intermediate_size=8, num_heads=4,
                                         out_hidden_size=64, fullatt_block_indexes=()))
