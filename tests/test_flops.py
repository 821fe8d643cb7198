"""MAC counting against published numbers, a second counter, and every form attention takes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lvmharness.measure import flops
from lvmharness.measure.flops import UncountedOpError, analyze, count_run, forward_macs, scaling_exponent

# Published: timm name -> (params in M to 3 decimals, GMACs at 224, batch 1). Sources: torchvision's model
# documentation tables (exact parameter counts; its "GFLOPS" column is multiply-adds) for resnet18/50 (resnet18,
# resnet50), ViT-B/L (vit_b_16, vit_l_16), Swin-T/S/B (swin_t, swin_s, swin_b) — the same architectures as timm's;
# ViT-Ti/S and DeiT (the same ViT shapes): DeiT paper (Touvron et al. 2021) Table 1 gives 5M/1.3G, 22M/4.6G,
# 86M/17.6G, and the three-decimal figures follow from the ViT formulas of test_vit_counts_follow_the_formulas.
REFERENCE = {
    "resnet18": (11.690, 1.814),
    "resnet50": (25.557, 4.089),
    "vit_tiny_patch16_224": (5.717, 1.254),
    "vit_small_patch16_224": (22.051, 4.599),
    "vit_base_patch16_224": (86.568, 17.564),
    "vit_large_patch16_224": (304.327, 61.555),
    "deit_tiny_patch16_224": (5.717, 1.254),
    "deit_small_patch16_224": (22.051, 4.599),
    "deit_base_patch16_224": (86.568, 17.564),
    "swin_tiny_patch4_window7_224": (28.288, 4.491),
    "swin_small_patch4_window7_224": (49.606, 8.741),
    "swin_base_patch4_window7_224": (87.768, 15.431),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_models_match_published_macs_and_params(name: str) -> None:
    params_m, gmacs = REFERENCE[name]
    report = analyze(name, backward=False)
    assert round(report.params / 1e6, 3) == params_m
    assert report.macs / 1e9 == pytest.approx(gmacs, rel=0.005)
    assert report.flops == 2 * report.macs
    assert report.uncounted_ops == {}


def vit_params(d: int, depth: int, patch: int = 16, tokens: int = 197, classes: int = 1000) -> int:
    """ViT (Dosovitskiy et al. 2021) parameter count: patch embedding (conv 3*p*p -> d, bias), class token and
    position embeddings, per block two LayerNorms (2d each), qkv (3d^2 + 3d), projection (d^2 + d), MLP with ratio 4
    (4d^2 + 4d and 4d^2 + d); final LayerNorm; the classifier head."""
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
    return (3 * patch * patch * d + d) + d + tokens * d + depth * block + 2 * d + (d * classes + classes)


def vit_macs(d: int, depth: int, patch: int = 16, img: int = 224, classes: int = 1000) -> int:
    """ViT forward multiply-adds: patch embedding, per block qkv + projection (4 n d^2), MLP (8 n d^2) and
    attention's QK^T and AV (2 n^2 d over all heads), then the head on the class token."""
    n = (img // patch) ** 2 + 1
    patches = (img // patch) ** 2 * 3 * patch * patch * d
    return patches + depth * (4 * n * d * d + 8 * n * d * d + 2 * n * n * d) + d * classes


@pytest.mark.parametrize(
    ("name", "dim", "depth"),
    [("vit_tiny_patch16_224", 192, 12), ("vit_small_patch16_224", 384, 12), ("vit_base_patch16_224", 768, 12)],
)
def test_vit_counts_follow_the_formulas(name: str, dim: int, depth: int) -> None:
    report = analyze(name, backward=False)
    assert report.params == vit_params(dim, depth)  # vit_tiny: 5,717,416
    assert report.macs == vit_macs(dim, depth)  # vit_tiny: 1,253,683,200


class VectorOps(nn.Module):
    """Matrix-vector, dot and batched-sum products, which no seed model uses."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.ones(6, 5)  # (6, 5) matrix; x is a length-5 vector
        if self.op == "mv":
            return torch.mv(m, x)
        if self.op == "addmv":
            return torch.addmv(torch.ones(6), m, x)
        if self.op == "dot":
            return torch.dot(x, x)
        if self.op == "vdot":
            return torch.vdot(x, x)
        # addbmm: sum over a batch of 3 of (4 x 5) @ (5 x 7), added to a (4 x 7) bias
        return torch.addbmm(torch.ones(4, 7), torch.ones(3, 4, 5), torch.ones(3, 5, 7))


@pytest.mark.parametrize(
    ("op", "aten_name", "expected"),
    [
        ("mv", "aten.mv", 6 * 5),  # one multiply-add per matrix element
        ("addmv", "aten.addmv", 6 * 5),  # the bias add is not a multiply-add
        ("dot", "aten.dot", 5),
        ("vdot", "aten.vdot", 5),
        ("addbmm", "aten.addbmm", 3 * 4 * 5 * 7),  # batch x rows x inner x cols
    ],
)
def test_vector_and_batched_sum_products_are_counted(op: str, aten_name: str, expected: int) -> None:
    counts = forward_macs(VectorOps(op), torch.ones(5))
    assert counts.by_op == {aten_name: expected}
    assert counts.macs == expected


@pytest.mark.parametrize(
    ("model", "sizes"),
    [("vit_tiny_patch16_224", (224, 384)), ("deit_tiny_patch16_224", (224, 384)),
     ("swin_tiny_patch4_window7_224", (224, 448)), ("resnet18", (224, 384))],
)
def test_fvcore_agrees_within_a_tenth_of_a_percent(model: str, sizes: tuple[int, int]) -> None:
    for size in sizes:
        report = analyze(model, img_size=size, backward=False, verify=True)
        assert report.verified_by is not None
        assert report.verified_by["rel_diff"] <= flops.AGREEMENT_TOLERANCE
        assert report.verified_by["macs"] > 0


def test_counts_are_the_same_on_cpu_and_meta_forward_and_backward() -> None:
    # On CPU timm's attention runs the flash CPU kernel (no formula in torch); on meta it decomposes to bmm.
    cpu = analyze("vit_tiny_patch16_224", img_size=96, device="cpu")
    meta = analyze("vit_tiny_patch16_224", img_size=96, device="meta")
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in cpu.by_op
    assert (cpu.macs, cpu.macs_fwd_bwd) == (meta.macs, meta.macs_fwd_bwd)
    # A training step is about 3x the forward (2x for gradients), minus the stem's unneeded input-gradient.
    assert meta.macs_fwd_bwd is not None
    assert 2.9 < meta.macs_fwd_bwd / meta.macs <= 3.0


class ExplicitAttention(nn.Module):
    """Attention written three ways, which must all count the same."""

    def __init__(self, dim: int = 32, heads: int = 4, form: str = "sdpa") -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.heads, self.form = heads, form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.form == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)
        elif self.form == "matmul":
            out = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1) @ v
        else:
            att = torch.einsum("bhqd,bhkd->bhqk", q, k).softmax(-1)
            out = torch.einsum("bhqk,bhkd->bhqd", att, v)
        return out.transpose(1, 2).reshape(b, n, c)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_counts_the_same_in_every_form(device: str) -> None:
    b, n, c = 2, 10, 32
    x = torch.randn(b, n, c, device=device)
    forms = ("sdpa", "matmul", "einsum")
    counts = {form: forward_macs(ExplicitAttention(form=form).to(device), x).macs for form in forms}
    expected = b * n * c * 3 * c + 2 * b * n * n * c  # qkv projection + QK^T and AV over all heads
    assert counts == {"sdpa": expected, "matmul": expected, "einsum": expected}


def test_multihead_attention_fast_path_is_counted() -> None:
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.randn(2, 10, 32)

    def fast() -> None:
        with torch.no_grad():
            mha(x, x, x, need_weights=False)

    fast_counts = count_run(mha, fast)
    assert "aten._native_multi_head_attention" in fast_counts.by_op  # the fused path really ran
    slow = count_run(mha.train(), lambda: mha(x, x, x, need_weights=False))
    b, n, e = 2, 10, 32
    assert fast_counts.macs == slow.macs == 4 * b * n * e * e + 2 * b * n * n * e


def test_torchvision_vit_fast_path_matches_meta() -> None:
    import torchvision

    net = torchvision.models.VisionTransformer(64, 16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128).eval()
    cpu = forward_macs(net, torch.randn(1, 3, 64, 64))
    meta = forward_macs(net.to("meta"), torch.empty(1, 3, 64, 64, device="meta"))
    assert "aten._native_multi_head_attention" in cpu.by_op
    assert cpu.macs == meta.macs > 0


class UsesCdist(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(5, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, self.centers)


def test_an_op_without_formula_fails_loudly_naming_it() -> None:
    with pytest.raises(UncountedOpError, match=r"aten\._cdist_forward") as info:
        forward_macs(UsesCdist(), torch.randn(3, 8))
    assert "aten._cdist_forward" in info.value.ops
    relaxed = forward_macs(UsesCdist(), torch.randn(3, 8), strict=False)
    assert relaxed.uncounted_ops == {"aten._cdist_forward": 1}


@pytest.mark.parametrize(
    ("op", "expected"),
    [("aten.addmm", True), ("aten::linear", True), ("aten._scaled_dot_product_flash_attention_for_cpu", True),
     ("aten.convolution_backward", True), ("aten._transformer_encoder_layer_fwd", True), ("aten.baddbmm", True),
     ("aten.native_layer_norm", False), ("aten.add", False), ("aten.gelu", False), ("aten.view", False),
     ("aten._convert_indices_from_coo_to_csr", False), ("aten.cummax", False), ("aten.softmax", False)],
)
def test_which_ops_carry_macs(op: str, expected: bool) -> None:
    assert flops.carries_macs(op) is expected


def test_batch_scales_macs_linearly() -> None:
    one = analyze("smoke_vit", backward=False)
    eight = analyze("smoke_vit", batch_size=8, backward=False)
    assert eight.macs == 8 * one.macs


def test_scaling_exponents_by_family() -> None:
    sizes = [224, 448, 672]
    fits = {
        m: scaling_exponent(sizes, [analyze(m, img_size=s, backward=False).macs for s in sizes])
        for m in ("resnet18", "swin_tiny", "vit_tiny")
    }
    assert fits["resnet18"] == pytest.approx(1.0, abs=0.01)  # convolution: linear in pixels
    assert fits["swin_tiny"] == pytest.approx(1.0, abs=0.01)  # windowed attention: linear too
    assert 1.1 < fits["vit_tiny"] < 2.0  # global attention: superlinear
    assert scaling_exponent([1, 2], [1, 16]) == pytest.approx(2.0)  # (2^2)^2 = 16


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        analyze("smoke_vit", batch_size=0)
    with pytest.raises(ValueError, match="two distinct"):
        scaling_exponent([224, 224], [1, 1])
