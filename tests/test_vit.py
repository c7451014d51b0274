"""ViT backbones (modules/vit.py): weight layouts load to the same features as timm, features are
the patch tokens on the patch grid, frozen backbones get no gradients, errors are one line.

Weights are random (no pretrained file can be fetched here): each test writes a randomly
initialised timm model's state dict in an official layout, built from the official key names.
"""
import argparse
import math

import pytest
import timm
import torch

from helpers import shallow_vits
from modules import vit
from modules.vit import (
    ARCH_TABLE,
    VIT_ARCHS,
    PretrainError,
    ViTConfig,
    ViTFeatures,
    build_vit,
    download_official_weights,
    load_vit_weights,
)

# Tokens before the patch tokens: CLS, plus DINOv3's 4 storage (register) tokens.
PREFIX_TOKENS = {"dino": 1, "dinov2": 1, "dinov3": 5}

# Tiny inputs: one thread is 3-10x faster than two on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Two transformer blocks instead of 12: what these tests check (key names, layouts, the token grid,
# errors) is the same in every block, and a ViT-S weights file shrinks from ~87 MB to ~16 MB (the
# suite's disk writes). Block indices in the expected messages follow DEPTH.
DEPTH = 2


@pytest.fixture(autouse=True, scope="module")
def shallow_backbones():
    with shallow_vits(DEPTH):
        yield


def randomise_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random and far from its init (LayerScale 1e-5 and zero biases would hide a
    wrongly mapped block or bias inside a 1e-6 tolerance)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            scale_like = name.endswith(("gamma", "gamma_1", "gamma_2")) or ("norm" in name and name.endswith("weight"))
            param.copy_(1 + 0.2 * noise if scale_like else 0.1 * noise)
    return model.eval()


def timm_model(arch: str, seed: int = 0, name: str = None) -> torch.nn.Module:
    model = timm.create_model(name or ARCH_TABLE[arch].timm_name, pretrained=False, num_classes=0,
                              dynamic_img_size=True, depth=DEPTH)
    return randomise_(model, seed)


def reference_features(model: torch.nn.Module, images: torch.Tensor, patch: int) -> torch.Tensor:
    """The last h*w tokens of timm's forward_features (prefix tokens come first), as [B, C, h, w]."""
    h, w = images.shape[-2] // patch, images.shape[-1] // patch
    with torch.no_grad():
        tokens = model.forward_features(images)
    return tokens[:, -h * w:].reshape(images.shape[0], h, w, -1).permute(0, 3, 1, 2)


def images_for(arch: str, h: int = 3, w: int = 5, batch: int = 2, seed: int = 1) -> torch.Tensor:
    p = ARCH_TABLE[arch].patch_size
    return torch.randn(batch, 3, h * p, w * p, generator=torch.Generator().manual_seed(seed))


# ---- official layouts, written from the official repositories' key names --------------------

def as_official_dino(state: dict) -> dict:
    """facebookresearch/dino vision_transformer.py uses timm's names (head is an Identity: no keys)."""
    return {k: v.clone() for k, v in state.items()}


def as_dino_training_checkpoint(state: dict) -> dict:
    """DINO's checkpoint.pth: teacher/student wrapped in DDP and MultiCropWrapper, plus the DINO head."""
    teacher = {f"module.backbone.{k}": v.clone() for k, v in state.items()}
    teacher["module.head.mlp.0.weight"] = torch.zeros(8, 4)
    student = {k: torch.zeros_like(v) for k, v in teacher.items()}  # never the one to load
    return {"teacher": teacher, "student": student, "epoch": 300, "args": argparse.Namespace(arch="vit_small")}


def as_dinov2_hub(state: dict) -> dict:
    """facebookresearch/dinov2 DinoVisionTransformer: timm's names (ls1/ls2.gamma) plus mask_token."""
    out = {k: v.clone() for k, v in state.items()}
    out["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    return out


def dinov3_official_periods(head_dim: int, base: float = 100.0) -> torch.Tensor:
    return base ** (2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2))


def as_dinov3_official(state: dict, num_heads: int) -> dict:
    """facebookresearch/dinov3 DinoVisionTransformer: storage_tokens, ls1/ls2.gamma, one qkv.bias
    with a bias_mask that zeroes the k part, mask_token and the rope periods buffer."""
    dim = state["cls_token"].shape[-1]
    gen = torch.Generator().manual_seed(7)
    out = {}
    for key, value in state.items():
        if key.endswith("attn.v_bias"):
            continue
        if key.endswith("attn.q_bias"):
            v_bias = state[key.replace("q_bias", "v_bias")]
            k_bias = torch.randn(dim, generator=gen)  # masked out by the official model: must not matter
            out[key.replace("q_bias", "qkv.bias")] = torch.cat([value, k_bias, v_bias])
            mask = torch.cat([torch.ones(dim), torch.zeros(dim), torch.ones(dim)])
            out[key.replace("q_bias", "qkv.bias_mask")] = mask
            continue
        key = key.replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma").replace("reg_token", "storage_tokens")
        out[key] = value.clone()
    out["mask_token"] = torch.zeros(1, dim)
    # The released files store the periods rounded to bfloat16.
    out["rope_embed.periods"] = dinov3_official_periods(dim // num_heads).to(torch.bfloat16)
    return out


def save(tmp_path, name: str, obj) -> str:
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def assert_loads_to_same_features(arch, reference, path, layout_expected, h=3, w=5):
    model = ViTFeatures(ViTConfig(arch)).eval()
    layout = load_vit_weights(model, path)
    assert layout == layout_expected
    images = images_for(arch, h, w)
    with torch.no_grad():
        got = model(images)
    assert torch.equal(got, reference_features(reference, images, model.stride))
    assert path in model.weights_source


# ---- 1. each layout loads to the features of the same weights built through timm --------------

@pytest.mark.parametrize("writer,layout", [(as_official_dino, "official DINO (= timm)"),
                                           (as_dino_training_checkpoint, "official DINO (= timm)")])
def test_dino_layouts_give_timm_features(tmp_path, writer, layout):
    reference = timm_model("dino_vits16")
    path = save(tmp_path, "dino.pth", writer(reference.state_dict()))
    assert_loads_to_same_features("dino_vits16", reference, path, layout)


@pytest.mark.parametrize("writer,layout", [(as_dinov2_hub, "DINOv2 hub"), (dict, "timm")])
def test_dinov2_layouts_give_timm_features(tmp_path, writer, layout):
    reference = timm_model("dinov2_vits14")
    path = save(tmp_path, "dinov2.pth", writer(reference.state_dict()))
    assert_loads_to_same_features("dinov2_vits14", reference, path, layout)


@pytest.mark.parametrize("layout", ["official DINOv3", "timm"])
def test_dinov3_layouts_give_timm_features(tmp_path, layout):
    reference = timm_model("dinov3_vits16")
    state = reference.state_dict()
    assert state["blocks.0.attn.q_bias"].abs().sum() > 0  # a bias that must arrive, not a zero one
    obj = as_dinov3_official(state, num_heads=6) if layout == "official DINOv3" else state
    path = save(tmp_path, "dinov3.pth", obj)
    assert_loads_to_same_features("dinov3_vits16", reference, path, layout)


def test_dinov3_file_without_qkv_bias_loads_as_zero_bias(tmp_path):
    """timm's bias-free DINOv3 variant: the same function as our q/v-bias model with zero biases."""
    reference = timm_model("dinov3_vits16", name="vit_small_patch16_dinov3")
    path = save(tmp_path, "dinov3_nobias.pth", reference.state_dict())
    assert_loads_to_same_features("dinov3_vits16", reference, path, "timm")


def test_dinov3_rotary_embedding_follows_the_official_formula_at_any_grid():
    """timm recomputes DINOv3's RoPE for each input grid (no interpolation, no 224 assumption):
    coordinates are patch centres normalised per side to [-1, 1], as in facebookresearch/dinov3."""
    backbone = ViTFeatures(ViTConfig("dinov3_vits16")).backbone
    head_dim = 384 // 6
    periods = dinov3_official_periods(head_dim)
    for h, w in [(3, 5), (5, 3), (14, 14), (7, 20)]:
        coords_h = torch.arange(0.5, h) / h
        coords_w = torch.arange(0.5, w) / w
        coords = 2 * torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), -1).flatten(0, 1) - 1
        angles = (2 * math.pi * coords[:, :, None] / periods[None, None, :]).flatten(1).tile(2)
        expected = torch.cat([angles.sin(), angles.cos()], dim=-1)
        torch.testing.assert_close(backbone.rope.get_embed(shape=(h, w)), expected, atol=1e-5, rtol=1e-5)


# ---- 2. features: patch tokens only, on the patch grid, any multiple of the patch size ----------

@pytest.mark.parametrize("arch", VIT_ARCHS)
def test_features_are_the_patch_tokens_on_the_grid(arch):
    spec = ARCH_TABLE[arch]
    model = ViTFeatures(ViTConfig(arch)).eval()
    assert (model.stride, model.feat_dim, model.embed_dim) == (spec.patch_size, spec.embed_dim, spec.embed_dim)
    images = images_for(arch, 3, 5)  # a non-square grid, far from the 224 / 518 px the weights were made at
    with torch.no_grad():
        out = model(images)
        tokens = model.backbone.forward_features(images)
    assert out.shape == (2, spec.embed_dim, 3, 5)
    # After the final LayerNorm (unit weight, zero bias at init): each token has mean 0, variance 1.
    torch.testing.assert_close(out.mean(1), torch.zeros(2, 3, 5), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.var(1, unbiased=False), torch.ones(2, 3, 5), atol=1e-3, rtol=0)
    assert tokens.shape[1] == 15 + PREFIX_TOKENS[spec.family]
    assert torch.equal(out, reference_features(model.backbone, images, spec.patch_size))
    # Spatial order: grid cell (i, j) is token i * w + j after the prefix.
    torch.testing.assert_close(out[:, :, 1, 4], tokens[:, PREFIX_TOKENS[spec.family] + 1 * 5 + 4])


def test_features_follow_the_input_size():
    model = ViTFeatures(ViTConfig("dino_vits8")).eval()
    for h, w in [(4, 4), (2, 7), (28, 28)]:  # 28 x 28 is the 224 px grid the DINO weights were made at
        with torch.no_grad():
            assert model(torch.randn(1, 3, 8 * h, 8 * w)).shape == (1, 384, h, w)


def test_channels_last_model_and_input_give_the_same_features():
    """The toolkit runs its networks in channels_last; the ViT must not care."""
    model = ViTFeatures(ViTConfig("dinov3_vits16", out_dim=8, head="linear")).eval()
    images = images_for("dinov3_vits16")
    with torch.no_grad():
        plain = model(images)
        model = model.to(memory_format=torch.channels_last)
        fast = model(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_input_not_a_multiple_of_the_patch_is_a_one_line_error():
    model = ViTFeatures(ViTConfig("dino_vits8"))
    with pytest.raises(ValueError) as info:
        model(torch.randn(1, 3, 25, 40))
    message = str(info.value)
    assert "25x40" in message and "patch size 8" in message and "24x40" in message and "\n" not in message


# ---- 3. frozen backbone + head ------------------------------------------------------------------

def forward_backward(model, images):
    grad_enabled = []
    hook = model.backbone.blocks[0].register_forward_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
    out = model(images)
    hook.remove()
    if out.requires_grad:
        out.square().mean().backward()
    return out, grad_enabled


def test_frozen_backbone_runs_without_grad_and_only_the_head_trains():
    model = ViTFeatures(ViTConfig("dino_vits16", out_dim=32, head="nonlinear", frozen=True)).train()
    assert not model.backbone.training and model.head.training  # train() keeps the backbone in eval
    out, grad_enabled = forward_backward(model, images_for("dino_vits16"))
    assert out.shape == (2, 32, 3, 5) and model.feat_dim == 32
    assert grad_enabled == [False]  # no activations kept for backward inside the backbone
    assert all(not p.requires_grad and p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())


def test_unfrozen_backbone_gets_gradients():
    model = ViTFeatures(ViTConfig("dino_vits16", out_dim=32, head="linear")).train()
    assert model.backbone.training
    _, grad_enabled = forward_backward(model, images_for("dino_vits16"))
    assert grad_enabled == [True]
    assert model.backbone.patch_embed.proj.weight.grad is not None and model.head.linear.weight.grad is not None


def test_heads_linear_and_nonlinear_branch():
    torch.manual_seed(0)
    model = ViTFeatures(ViTConfig("dino_vits16", out_dim=16, head="nonlinear")).eval()
    images = images_for("dino_vits16")
    with torch.no_grad():
        feats = model.backbone_features(images)
        linear = model.head.linear(feats)
        assert not torch.allclose(model(images), linear)  # the branch adds something
        model.head.nonlinear[-1].weight.zero_()
        model.head.nonlinear[-1].bias.zero_()
        torch.testing.assert_close(model(images), linear)  # ... and only adds
    assert ViTFeatures(ViTConfig("dino_vits16", out_dim=16, head="linear")).head.nonlinear is None


# ---- 4. config: enough to rebuild from a checkpoint --------------------------------------------

def test_config_round_trip_rebuilds_the_model():
    model = ViTFeatures(ViTConfig("dinov2_vits14", out_dim=24, head="linear", frozen=True)).eval()
    saved = model.config.to_dict()
    assert saved == {"arch": "dinov2_vits14", "out_dim": 24, "head": "linear", "frozen": True, "depth": DEPTH,
                     "patch_size": 14, "embed_dim": 384, "timm_name": "vit_small_patch14_dinov2", "family": "dinov2"}
    rebuilt = ViTFeatures(ViTConfig.from_dict(saved)).eval()
    rebuilt.load_state_dict(model.state_dict())
    images = images_for("dinov2_vits14")
    with torch.no_grad():
        assert torch.equal(rebuilt(images), model(images))
    assert ViTConfig("dino_vits8").to_dict()["out_dim"] == 384  # no head: the backbone's width


def test_depth_builds_the_first_blocks_and_none_builds_all():
    assert len(ViTFeatures(ViTConfig("dino_vits16", depth=None)).backbone.blocks) == 12
    assert len(ViTFeatures(ViTConfig("dino_vits16", depth=3)).backbone.blocks) == 3
    with pytest.raises(ValueError, match="depth must be positive"):
        ViTConfig("dino_vits16", depth=0).resolved()


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="choose one of dino_vits8"):
        ViTConfig("vit_tiny").resolved()
    with pytest.raises(ValueError, match="needs a head"):
        ViTConfig("dino_vits8", out_dim=64).resolved()
    with pytest.raises(ValueError, match="patch_size 16"):
        ViTConfig.from_dict({"arch": "dino_vits8", "patch_size": 16})


# ---- 5. wrong or partial files: one line naming the keys and the fix ------------------------------

@pytest.fixture(scope="module")
def vits16_state():
    return timm_model("dino_vits16").state_dict()


def load_error(tmp_path, arch, obj) -> str:
    path = tmp_path / "weights.pth"
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    else:
        torch.save(obj, path)
    with pytest.raises(PretrainError) as info:
        load_vit_weights(ViTFeatures(ViTConfig(arch)), str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_partial_file_names_the_missing_keys(tmp_path, vits16_state):
    last = DEPTH - 1
    partial = {k: v for k, v in vits16_state.items() if not k.startswith(f"blocks.{last}.")}
    message = load_error(tmp_path, "dino_vits16", partial)
    assert f"missing 12 keys (blocks.{last}.attn.proj.bias, blocks.{last}.attn.proj.weight, " in message
    assert "--arch" in message and "unexpected" not in message


def test_extra_keys_are_named(tmp_path, vits16_state):
    deeper = dict(vits16_state, **{f"blocks.{DEPTH}.norm1.weight": torch.ones(384),
                                   f"blocks.{DEPTH}.norm1.bias": torch.zeros(384)})
    message = load_error(tmp_path, "dino_vits16", deeper)
    assert (f"unexpected 2 keys (blocks.{DEPTH}.norm1.bias, blocks.{DEPTH}.norm1.weight)" in message
            and "missing" not in message)


def test_wrong_patch_size_or_width_is_named(tmp_path, vits16_state):
    message = load_error(tmp_path, "dino_vits8", vits16_state)
    assert "patch 16" in message and "patch 8" in message and "--arch" in message
    wide = dict(vits16_state, **{"patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)})
    assert "width 768" in load_error(tmp_path, "dino_vits16", wide)
    odd = dict(vits16_state, **{"blocks.1.mlp.fc1.weight": torch.zeros(1024, 384)})
    assert "blocks.1.mlp.fc1.weight has shape (1024, 384), the model (1536, 384)" in load_error(
        tmp_path, "dino_vits16", odd)


def test_file_of_another_family_is_named(tmp_path, vits16_state):
    assert "holds DINO weights but --arch dinov3_vits16 is DINOv3" in load_error(tmp_path, "dinov3_vits16",
                                                                                 vits16_state)
    dinov2 = as_dinov2_hub(vits16_state)
    assert "holds DINOv2 weights but --arch dino_vits16 is DINO" in load_error(tmp_path, "dino_vits16", dinov2)


def test_dinov3_file_with_other_rotary_periods_fails(tmp_path):
    state = as_dinov3_official(timm_model("dinov3_vits16").state_dict(), num_heads=6)
    state["rope_embed.periods"] = state["rope_embed.periods"] * 2
    assert "rotary periods" in load_error(tmp_path, "dinov3_vits16", state)


def test_unusable_files(tmp_path):
    assert "not a ViT state dict" in load_error(tmp_path, "dino_vits16", {"conv1.weight": torch.zeros(1)})
    assert "could not be read" in load_error(tmp_path, "dino_vits16", b"not a checkpoint")
    assert "not a state dict" in load_error(tmp_path, "dino_vits16", [torch.zeros(1)])
    with pytest.raises(PretrainError, match="does not exist"):
        load_vit_weights(ViTFeatures(ViTConfig("dino_vits16")), str(tmp_path / "absent.pth"))


# ---- 6. official downloads and random init -------------------------------------------------------

def test_arch_table_names_exist_in_timm_and_the_official_files():
    for arch, spec in ARCH_TABLE.items():
        assert timm.is_model(spec.timm_name), spec.timm_name
        assert arch.startswith(spec.family + "_")
        if spec.url:
            assert spec.url.endswith("/" + spec.filename)
    assert ARCH_TABLE["dino_vits8"].url.endswith("dino_deitsmall8_300ep_pretrain.pth")  # STEGO's / HP's file
    assert ARCH_TABLE["dinov3_vits16"].url is None and ARCH_TABLE["dinov3_vitb16"].url is None


def no_download(*args, **kwargs):
    raise OSError("network unreachable")


def test_offline_pretrain_says_which_url_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(PretrainError) as info:
        build_vit("dino_vits8", pretrain=True)
    message = str(info.value)
    assert ARCH_TABLE["dino_vits8"].url in message and "--pretrain_path" in message and "\n" not in message
    assert str(tmp_path / "hub" / "checkpoints" / "dino_deitsmall8_300ep_pretrain.pth") in message


def test_pretrain_reads_the_file_already_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    reference = timm_model("dinov2_vits14")
    _, cache = vit.official_weights_file("dinov2_vits14")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(as_dinov2_hub(reference.state_dict()), cache)
    model = build_vit("dinov2_vits14", pretrain=True).eval()
    images = images_for("dinov2_vits14")
    with torch.no_grad():
        assert torch.equal(model(images), reference_features(reference, images, 14))


def test_dinov3_is_never_downloaded(monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("DINOv3 must not download"))
    with pytest.raises(PretrainError) as info:
        download_official_weights("dinov3_vitb16")
    message = str(info.value)
    assert "licence" in message and vit.DINOV3_DOWNLOADS in message and "--pretrain_path" in message
    assert "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth" in message


def test_random_init_warns():
    with pytest.warns(UserWarning, match="random initialisation"):
        model = build_vit("dino_vits16", out_dim=8, head="linear", freeze_backbone=True)
    assert model.weights_source.startswith("random initialisation") and model.config.frozen
