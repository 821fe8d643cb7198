"""MAC counting against published numbers, a second counter, and every form attention takes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lvmharness.measure import flop_formulas, flop_fvcore, flops
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
     ("aten._convert_indices_from_coo_to_csr", False), ("aten.cummax", False), ("aten.softmax", False),
     # the other spellings: an overload packet's str, fvcore's "aten::", an overload, a bare name
     ("addmm.default", True), ("aten.addmm.default", True), ("aten::mm.out", True), ("bmm", True),
     ("aten::native_layer_norm", False), ("gelu.default", False),
     ("aten", False)],  # a bare namespace names no op (and must not raise)
)
def test_which_ops_carry_macs(op: str, expected: bool) -> None:
    assert flop_formulas.carries_macs(op) is expected


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


# --- hand-derived counts for each formula, the error paths and the reports -------------------------------------


def test_the_uncounted_op_error_lists_each_op_with_its_count_and_says_what_to_do() -> None:
    def run() -> None:
        # cdist twice and an outer-product update once: both carry multiply-adds and neither has a formula
        torch.cdist(torch.ones(3, 2), torch.ones(4, 2))
        torch.cdist(torch.ones(3, 2), torch.ones(4, 2))
        torch.addr(torch.ones(3, 4), torch.ones(3), torch.ones(4))

    with pytest.raises(UncountedOpError) as info:
        count_run(nn.Identity(), run)  # strict is the default: an incomplete count is an error
    assert info.value.ops == {"aten._cdist_forward": 2, "aten.addr": 1}  # every call seen, not just the first
    assert str(info.value) == (
        "the model ran ops that carry multiply-adds but have no MAC formula: aten._cdist_forward (x2), aten.addr (x1)."
        " Refusing to report a count that would be too small; add a formula for each to EXTRA_FORMULAS in"
        " lvmharness/measure/flop_formulas.py"
    )


class CdistHead(nn.Module):
    """A linear layer (counted) feeding cdist (no formula), to see what strict=False reports around it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8, bias=False)
        self.centers = nn.Parameter(torch.randn(5, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(self.fc(x), self.centers)


def test_a_training_step_with_an_uncounted_op_fails_unless_relaxed() -> None:
    x = torch.randn(3, 8)
    # cdist's backward runs once per input that needs a gradient: the layer's output and the centers
    with pytest.raises(UncountedOpError, match=r"aten\._cdist_backward \(x2\), aten\._cdist_forward \(x1\)"):
        flops.forward_backward_macs(CdistHead(), x)
    relaxed = flops.forward_backward_macs(CdistHead(), x, strict=False)
    assert relaxed.uncounted_ops == {"aten._cdist_forward": 1, "aten._cdist_backward": 2}
    # The linear layer alone: forward 3 x 8 x 8 = 192, its weight gradient 192 more (the input needs no gradient).
    assert relaxed.macs == 2 * 3 * 8 * 8


def test_a_training_step_count_leaves_no_gradients_behind() -> None:
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    counts = flops.forward_backward_macs(net, torch.randn(5, 4))
    # forward 5*4*6 + 5*6*2 = 180; backward: both weight gradients (180) and the second layer's input gradient (60)
    assert counts.macs == 180 + 180 + 5 * 6 * 2
    # per layer: forward (addmm) then the gradients (mm); the first layer has no input gradient to compute
    assert counts.by_module == {
        "": {"aten.addmm": 180, "aten.mm": 180 + 60},
        "0": {"aten.addmm": 5 * 4 * 6, "aten.mm": 5 * 4 * 6},
        "2": {"aten.addmm": 5 * 6 * 2, "aten.mm": 2 * 5 * 6 * 2},
    }
    assert all(p.grad is None for p in net.parameters())  # freed, not zero-filled: no memory held by a count


def test_counting_prints_nothing_and_leaves_the_computation_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    x = torch.randn(3, 4)
    out: list[torch.Tensor] = []

    def run() -> None:
        # keyword-only arguments (dtype) reach the op through the dispatch modes
        out.append(torch.zeros(2, dtype=torch.float64))
        out.append(x.sum(dim=0, dtype=torch.float64))

    count_run(nn.Identity(), run)
    assert out[0].dtype == torch.float64
    assert torch.equal(out[1], x.sum(dim=0, dtype=torch.float64))
    assert capsys.readouterr().out == ""  # no table printed by torch's counter


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3, bias=False)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc(x))


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(5, 4)
        self.inner = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.stem(x)) @ torch.ones(2, 6)


def test_macs_per_module_subtree_leave_out_modules_outside_the_model() -> None:
    net, before, after = Outer(), nn.Linear(5, 5), nn.Sequential(nn.Linear(5, 5))
    x = torch.randn(7, 5)

    def run() -> None:
        # modules that are not part of the model, run before and after it: in the total, in no module row
        before(x)
        net(x)
        after(x)

    counts = count_run(net, run)
    # batch 7: stem 7*5*4 = 140 (addmm), inner.fc 7*4*3 = 84 (mm, no bias), inner.fc2 7*3*2 = 42 (addmm),
    # the model's own product (7 x 2) @ (2 x 6) = 84 (mm); each stray layer 7*5*5 = 175 (addmm).
    assert counts.by_module == {
        "": {"aten.addmm": 140 + 42, "aten.mm": 84 + 84},
        "stem": {"aten.addmm": 140},
        "inner": {"aten.mm": 84, "aten.addmm": 42},
        "inner.fc": {"aten.mm": 84},
        "inner.fc2": {"aten.addmm": 42},
    }
    assert counts.by_op == {"aten.addmm": 140 + 42 + 2 * 175, "aten.mm": 84 + 84}
    assert counts.macs == 140 + 84 + 42 + 84 + 2 * 175
    # exact integers (JSON shows them as such), not halves of FLOPs as floats
    assert all(type(v) is int for ops in (counts.by_op, *counts.by_module.values()) for v in ops.values())


def test_a_run_without_ops_counts_zero() -> None:
    assert count_run(nn.Identity(), lambda: None) == flops.OpCounts(0, {}, {}, {})


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_cross_attention_backward_is_twice_its_forward(device: str) -> None:
    """Queries (b, h, lq, d) against keys/values (b, h, lk, d): forward QK^T and AV are b*h*lq*lk*d MACs each; the
    backward takes the gradients of both operands of both products, 4 such products. On CPU the flash kernel
    and its backward run (our formulas); on meta the math path's bmm (torch's formulas)."""
    b, h, lq, lk, d = 2, 3, 5, 7, 8

    class Attend(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = nn.Parameter(torch.randn(b, h, lq, d))
            self.k = nn.Parameter(torch.randn(b, h, lk, d))
            self.v = nn.Parameter(torch.randn(b, h, lk, d))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(self.q, self.k, self.v) * x

    net = Attend().to(device)
    x = torch.ones((), device=device)
    fwd = 2 * b * h * lq * lk * d  # 3,360
    assert forward_macs(net, x).macs == fwd
    step = flops.forward_backward_macs(net, x)
    assert step.macs == fwd + 2 * fwd
    if device == "cpu":
        assert step.by_op == {"aten._scaled_dot_product_flash_attention_for_cpu": fwd,
                              "aten._scaled_dot_product_flash_attention_for_cpu_backward": 2 * fwd}
    # torch's own counter agrees on the forward (it counts FLOPs = 2 MACs; on meta it sees the math path's bmm)
    with torch.utils.flop_counter.FlopCounterMode(display=False) as ref:
        q, kv = torch.empty(b, h, lq, d, device="meta"), torch.empty(b, h, lk, d, device="meta")
        F.scaled_dot_product_attention(q, kv, kv)
    assert ref.get_total_flops() == 2 * fwd


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("addmm", 4 * 3 * 5),  # (4 x 3) @ (3 x 5) plus a bias: rows x inner x cols
        ("mm", 4 * 3 * 5),
        ("bmm", 2 * 4 * 3 * 5),  # batch x rows x inner x cols
        ("matmul", 2 * 4 * 3 * 5),  # (2, 4, 3) @ (3, 5)
        ("linear", 2 * 4 * 3 * 5),  # Linear(3 -> 5) on (2, 4, 3)
        ("einsum", 2 * 4 * 3 * 5),  # abc,abd->acd: a=2, b=4 summed, c=3, d=5
        # Conv2d(4 -> 6, 3x3, stride 2, pad 1, groups 2) on 8x9: output 6 x 4 x 5 elements, each in/groups x 3 x 3
        ("conv", 6 * 4 * 5 * (4 // 2) * 3 * 3),
        ("sdpa", 2 * 3 * 5 * 7 * 8 + 2 * 3 * 5 * 7 * 4),  # (2,3,5,8) against (2,3,7,8) keys, (2,3,7,4) values
        ("sdpa3d", 2 * 5 * 7 * 8 + 2 * 5 * 7 * 4),  # the same without a head dimension
    ],
)
def test_fvcore_counts_each_op_it_is_given(op: str, expected: int) -> None:
    """The second counter on one op at a time, against the definition of the op, and against torch's counter."""

    class One(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False)
            self.lin = nn.Linear(3, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (2, 4, 3)
            if op == "addmm":
                return torch.addmm(torch.ones(4, 5), x[0], torch.ones(3, 5))
            if op == "mm":
                return torch.mm(x[0], torch.ones(3, 5))
            if op == "bmm":
                return torch.bmm(x, torch.ones(2, 3, 5))
            if op == "matmul":
                return x @ torch.ones(3, 5)
            if op == "linear":
                return self.lin(x)
            if op == "einsum":
                return torch.einsum("abc,abd->acd", x, torch.ones(2, 4, 5))
            if op == "conv":
                return self.conv(x.reshape(1, 4, 2, 3).repeat(1, 1, 4, 3))  # (1, 4, 8, 9)
            lead = (2, 3) if op == "sdpa" else (2,)
            return F.scaled_dot_product_attention(torch.ones(*lead, 5, 8), torch.ones(*lead, 7, 8),
                                                  torch.ones(*lead, 7, 4)) * x.sum()

    net, x = One(), torch.randn(2, 4, 3)
    assert flop_fvcore.fvcore_macs(net, x) == (expected, {})
    assert forward_macs(net, x).macs == expected


def test_fvcore_counts_only_multiply_adds_and_names_what_it_cannot_count(caplog: pytest.LogCaptureFixture) -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 4)
            self.norm = nn.LayerNorm(4)
            self.unused = nn.Linear(2, 2)  # never called

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.mv(torch.relu(self.norm(self.fc(x))), torch.ones(4))

    with caplog.at_level("WARNING"):
        macs, missing = flop_fvcore.fvcore_macs(Mixed(), torch.randn(3, 6))
    assert macs == 3 * 6 * 4  # the linear layer; fvcore's norm handle (on by default) is cleared
    assert missing == {"aten::mv": 1}  # layer_norm and relu are not reported: they carry no multiply-adds
    assert caplog.records == []  # no warnings for unsupported ops or uncalled modules: they are returned instead


SMOKE_VIT_64 = vit_macs(64, 2, patch=8, img=64)  # smoke_vit at 64 px: 65 tokens of width 64, 2 blocks; 8,321,792


def test_fvcore_verification_agrees_on_a_real_model() -> None:
    info = flops.verify_with_fvcore("smoke_vit", 64, 2, 2 * SMOKE_VIT_64)
    assert info == {"counter": flops.SECOND_COUNTER, "macs": 2 * SMOKE_VIT_64, "rel_diff": 0.0, "uncounted_ops": {}}


def test_fvcore_verification_tolerance_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    second = 2 * SMOKE_VIT_64
    ours = second + 7
    rel = abs(second - ours) / ours  # the relative difference, taken against our count
    monkeypatch.setattr(flops, "AGREEMENT_TOLERANCE", rel)
    assert flops.verify_with_fvcore("smoke_vit", 64, 2, ours)["rel_diff"] == rel  # exactly at tolerance: accepted
    monkeypatch.setattr(flops, "AGREEMENT_TOLERANCE", math.nextafter(rel, 0.0))
    with pytest.raises(flops.CounterDisagreementError, match=f"FlopCounterMode says {ours} MACs, fvcore says {second}"):
        flops.verify_with_fvcore("smoke_vit", 64, 2, ours)


def test_fvcore_verification_rejects_a_count_off_by_more_than_a_tenth_of_a_percent() -> None:
    second = SMOKE_VIT_64
    ours = second * 1002 // 1000  # 0.2 % more
    with pytest.raises(flops.CounterDisagreementError, match=r"smoke_vit at 64px: .* tolerance 0\.1%"):
        flops.verify_with_fvcore("smoke_vit", 64, 1, ours)


class Fixed(nn.Module):
    """A stand-in model with a fixed number of multiply-adds on any (b, 3, s, s) input at batch 1."""

    def __init__(self, macs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 1, bias=False)
        self.macs = macs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.macs == 0:
            return x.flatten(1)
        if self.macs == 1:
            return self.fc(x[:, :1, 0, 0])  # one 1 x 1 product per image
        return torch.mv(x[0, 0], x[0, 0, 0])  # fvcore has no handle for mv


@pytest.mark.parametrize(
    ("model_macs", "ours", "outcome"),
    [(0, 0, "agree"),  # both zero: nothing to disagree about
     (1, 0, "disagree"),  # we count none, fvcore one: a miss, whatever the ratio
     (1, 1, "agree"),
     (2, 4, "cannot verify")],  # fvcore cannot count mv
)
def test_fvcore_verification_edge_cases(monkeypatch: pytest.MonkeyPatch, model_macs: int, ours: int,
                                        outcome: str) -> None:

    monkeypatch.setattr(flops, "create_model", lambda name, img_size, device: Fixed(model_macs))
    if outcome == "agree":
        assert flops.verify_with_fvcore("fixed", 4, 1, ours)["rel_diff"] == 0.0
    elif outcome == "disagree":
        with pytest.raises(flops.CounterDisagreementError, match="FlopCounterMode says 0 MACs, fvcore says 1"):
            flops.verify_with_fvcore("fixed", 4, 1, ours)
    else:
        with pytest.raises(flops.CounterDisagreementError,
                           match=r"fvcore could not count MAC-carrying ops \['aten::mv'\] for fixed; cannot verify"):
            flops.verify_with_fvcore("fixed", 4, 1, ours)


def test_analyze_reports_the_model_as_asked() -> None:
    """smoke_vit (ViT, width 64, depth 2, patch 8, 2 heads) at 64 px: 64 patches + the class token = 65 tokens.
    A training step is the forward, then for every layer the weight gradient and the input gradient (each as many
    MACs as the layer's forward; attention's backward is twice its forward too), except the patch embedding's
    input gradient: the image needs none."""
    report = analyze("smoke_vit", img_size=64, batch_size=2)
    patch_embedding = 2 * 64 * (3 * 8 * 8) * 64  # per image 64 patches of 3x8x8 onto 64 channels
    assert (report.model, report.alias, report.img_size, report.batch_size, report.device) == (
        "vit_tiny_patch16_224", "smoke_vit", 64, 2, "meta")
    assert report.params == vit_params(64, 2, patch=8, tokens=65)  # 181,672
    assert report.macs == 2 * SMOKE_VIT_64
    assert report.macs_fwd_bwd == 3 * report.macs - patch_embedding
    assert report.uncounted_ops == {} and report.verified_by is None
    assert sum(report.by_op.values()) == report.macs
    assert sum(report.by_module[""].values()) == report.macs
    assert sum(report.by_module["blocks.0"].values()) == (12 * 65 * 64 * 64 + 2 * 65 * 65 * 64) * 2
    assert analyze("smoke_vit", img_size=64, batch_size=2, backward=False).macs_fwd_bwd is None


def test_analyze_defaults() -> None:
    report = analyze("smoke_vit")  # the model's default size (32 px), batch 1, with the training step, not verified
    assert (report.img_size, report.batch_size, report.device, report.verified_by) == (32, 1, "meta", None)
    assert report.macs == 2_005_760  # the ViT formula by hand: see test_vit_counts_follow_the_formulas
    assert report.macs_fwd_bwd == 3 * 2_005_760 - 16 * (3 * 8 * 8) * 64


def test_analyze_on_a_real_device_feeds_a_standard_normal_batch(monkeypatch: pytest.MonkeyPatch) -> None:

    seen: list[torch.Tensor] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.detach().clone())
            return self.fc(x.mean((2, 3)))

    monkeypatch.setattr(flops, "create_model", lambda spec, img_size, device: Probe().to(device))
    report = analyze("smoke_vit", img_size=16, batch_size=4, device="cpu", backward=False)
    assert (report.macs, report.device) == (4 * 3 * 2, "cpu")
    analyze("smoke_vit", img_size=16, batch_size=4, device="cpu", backward=False)
    first, second = seen
    assert first.shape == (4, 3, 16, 16)
    # a fresh draw each time (uninitialised memory would repeat whatever the freed block held)
    assert not torch.equal(first, second)
    # 3,072 draws of N(0, 1): mean within 0.1 and std within 10 % (each > 5 standard errors away)
    for x in (first, second):
        assert abs(x.mean().item()) < 0.1 and 0.9 < x.std().item() < 1.1


def test_batch_size_must_be_positive_and_the_error_says_so() -> None:
    with pytest.raises(ValueError, match=r"^batch_size must be >= 1, got -2$"):
        analyze("smoke_vit", batch_size=-2)


def test_report_summary_and_flops_are_twice_the_macs() -> None:
    report = flops.FlopReport(
        model="m", alias="a", img_size=32, batch_size=2, params=10, macs=3_000_000_000, macs_fwd_bwd=8_000_000_000,
        by_op={"aten.mm": 3_000_000_000}, by_module={"": {"aten.mm": 3_000_000_000}},
        uncounted_ops={"aten.addr": 1}, verified_by={"macs": 3_000_000_000},
    )
    assert report.summary() == {
        "model": "m", "alias": "a", "img_size": 32, "batch_size": 2, "params": 10,
        "macs": 3_000_000_000, "flops": 6_000_000_000,
        "macs_fwd_bwd": 8_000_000_000, "flops_fwd_bwd": 16_000_000_000,
        "gmacs_per_image": 1.5,  # 3e9 MACs / 2 images / 1e9
        "counter": flops.PRIMARY_COUNTER, "device": "meta", "uncounted_ops": {"aten.addr": 1},
        "macs_by_op": {"aten.mm": 3_000_000_000}, "verified_by": {"macs": 3_000_000_000},
        "convention": "macs",  # the default: multiply-adds only (see flops.CONVENTIONS)
    }
    no_step = flops.FlopReport("m", "a", 32, 1, 10, 5, None, {}, {})
    assert (no_step.flops, no_step.flops_fwd_bwd) == (10, None)


def _report(by_module: dict[str, dict[str, int]], macs: int) -> flops.FlopReport:
    return flops.FlopReport("m", "a", 32, 1, 0, macs, None, {}, by_module)


def test_module_table_rows_by_depth_largest_first() -> None:
    by_module = {
        "": {"aten.mm": 200},
        "stem": {"aten.convolution": 20},
        "blocks": {"aten.mm": 150},
        "blocks.0": {"aten.mm": 50},
        "blocks.0.fc": {"aten.mm": 50},  # depth 3
        "blocks.1": {"aten.mm": 100},
        "norm": {},  # no MACs: no row
        "head": {"aten.mm": 25, "aten.addmm": 5},  # 30 over two ops
    }
    report = _report(by_module, 200)
    assert flops.module_table(report) == [  # default depth 2: "blocks.0" (one dot) is in, "blocks.0.fc" is not
        ("blocks", 150, 0.75), ("blocks.1", 100, 0.5), ("blocks.0", 50, 0.25), ("head", 30, 0.15), ("stem", 20, 0.1),
    ]
    assert flops.module_table(report, depth=1, top=2) == [("blocks", 150, 0.75), ("head", 30, 0.15)]
    assert flops.module_table(report, depth=3)[3] == ("blocks.0.fc", 50, 0.25)  # ties keep the model's order
    many = _report({"": {"aten.mm": 10 * 20}, **{f"layer{i}": {"aten.mm": 10} for i in range(20)}}, 10 * 20)
    assert len(flops.module_table(many)) == 15  # the default top


def test_scaling_exponent_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"^need at least two \(size, macs\) pairs$"):
        scaling_exponent([224, 448, 672], [1, 4])
    with pytest.raises(ValueError, match=r"^need at least two \(size, macs\) pairs$"):
        scaling_exponent([224], [1])
    with pytest.raises(ValueError, match=r"^need at least two distinct sizes$"):
        scaling_exponent([224, 224], [1, 1])
    # MACs ∝ pixels^1.5 over three sizes: sides 1, 2, 4 -> pixels 1, 4, 16 -> MACs 1, 8, 64
    assert scaling_exponent([1, 2, 4], [1, 8, 64]) == pytest.approx(1.5)
