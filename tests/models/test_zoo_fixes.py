"""Models of the zoos the harness once could not count or predicted wrongly, each reduced to a tiny model written
here: a constructor that reads back a tensor it computed, a class token viewed under no_grad, an LSTM, a
submodule shared by two parents, tied weights, a head-less model, auxiliary logits in train mode; and the counting
conventions that published tables use.

Expected numbers are derived in the tests: a convolution of C_in -> C_out channels with a k x k kernel on an
H x W output costs C_in * C_out * k^2 * H * W multiply-adds (bias free); a linear layer I -> O costs I * O per row;
an LSTM layer (4 gates) costs T * B * (4H * I + 4H * H) per direction; fp32 = 4 bytes per element; AdamW keeps two
moments per parameter element plus one float32 ``step`` per parameter tensor (torch.optim.AdamW on the CPU).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from lvmharness.commands.main import main
from lvmharness.core.errors import ConfigError
from lvmharness.core.memory_categories import CATEGORIES
from lvmharness.measure import flop_formulas, flops
from lvmharness.measure.flops import analyze, count_run, forward_backward_macs, forward_macs, parse_convention
from lvmharness.measure.prediction import measure_step, predict_step
from lvmharness.measure.step import StepConfig
from lvmharness.models.aliases import register_model
from lvmharness.models.build import create_model

# --- 1. a constructor that reads back what it computed ----------------------------------------------------------


class ToListNet(nn.Module):
    """Stage widths computed with tensors and read back with ``.tolist()``, as torchvision's RegNet does."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        widths = (torch.arange(1, 4) * 8).tolist()  # [8, 16, 24]
        chans = [3, *widths]
        self.convs = nn.Sequential(*[nn.Conv2d(a, b, 3, padding=1, bias=False) for a, b in itertools.pairwise(chans)])
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x).mean((2, 3)))


@register_model("t22_tolist", default_img_size=16)
def tolist_net(num_classes: int = 10) -> nn.Module:
    return ToListNet(num_classes)


def test_under_the_meta_device_context_the_constructor_cannot_read_back() -> None:
    """The defect as torch has it: the constructor's arange is meta, ``.tolist()`` has nothing to copy."""
    with torch.device("meta"), pytest.raises(NotImplementedError, match="meta"):
        ToListNet()


def test_building_on_meta_keeps_what_the_constructor_computes() -> None:
    net = create_model("t22_tolist", device="meta")
    assert all(p.device.type == "meta" for p in net.parameters())
    # what .tolist() gave on the CPU
    assert [c.out_channels for c in net.modules() if isinstance(c, nn.Conv2d)] == [8, 16, 24]
    report = analyze("t22_tolist", backward=False)
    conv_macs = (3 * 8 + 8 * 16 + 16 * 24) * 9 * 16 * 16  # 3x3, padding 1: the output is 16 x 16
    assert report.macs == conv_macs + 24 * 10
    assert report.params == (3 * 8 + 8 * 16 + 16 * 24) * 9 + 24 * 10 + 10


# --- 2. torchvision models built for the size asked ---------------------------------------------------------------


@pytest.mark.slow  # a full-size model: seconds
def test_torchvision_vit_is_built_for_its_weights_resolution() -> None:
    """ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1 (torchvision 0.29): 384 px, num_params 86,859,496, _ops 55.484
    (GMACs): the position table grows from 197 to 577 entries."""
    report = analyze("torchvision:vit_b_16", img_size=384, backward=False)
    assert report.params == 86_859_496
    assert abs(report.macs / 1e9 - 55.484) <= 0.0005


@pytest.mark.slow  # a full-size model: seconds
def test_a_refused_size_is_never_offered_as_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "torchvision:vit_b_16", "--img-size", "383"]) == 2
    err = capsys.readouterr().err.strip()
    assert "patch size 16" in err and len(err.splitlines()) == 1
    offered = [int(v) for v in err.split("Valid sizes near it:")[1].strip(" .").split(", ")]
    assert 383 not in offered and all(v % 16 == 0 for v in offered)


# --- 3. a view of a parameter under no_grad -----------------------------------------------------------------------


class ClassTokenNet(nn.Module):
    """A class token expanded to the batch and handed to a submodule (PiT, CaiT): under no_grad the expanded view
    still requires grad but has no grad_fn."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.proj = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(self.cls_token.expand(x.shape[0], -1, -1))
        return self.head(tokens[:, 0] + x.mean((1, 2, 3))[:, None])


def test_forward_count_takes_a_view_of_a_parameter_under_no_grad() -> None:
    net, x = ClassTokenNet(), torch.zeros(2, 3, 4, 4)
    assert forward_macs(net, x).macs == 2 * (8 * 8 + 8 * 4)
    assert all(p.requires_grad for p in net.parameters())  # switched back on afterwards
    # forward + backward: each linear's backward is two matmuls its size (input and weight gradients)
    assert forward_backward_macs(net, x).macs == 3 * 2 * (8 * 8 + 8 * 4)


# --- 4. recurrent layers ------------------------------------------------------------------------------------------


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0])


# T = 5 steps, B = 3: layer 1 is 4H x I + 4H x H = 64 x 8 + 64 x 16; layer 2 takes the 16-wide hidden state.
LSTM_MACS = 5 * 3 * ((64 * 8 + 64 * 16) + (64 * 16 + 64 * 16)) + 5 * 3 * 16 * 4


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_lstm_is_counted_on_every_path(device: str) -> None:
    """On CPU tensors oneDNN runs each layer as one ``mkldnn_rnn_layer``; on meta it decomposes into matmuls.
    Both give the formula."""
    net = LSTMNet().to(device)
    x = torch.zeros(3, 5, 8, device=device)
    counts = count_run(net, lambda: net(x))
    assert counts.macs == LSTM_MACS, counts.by_op
    if device == "cpu" and torch.backends.mkldnn.is_available():
        assert "aten.mkldnn_rnn_layer" in counts.by_op


def test_lstm_backward_is_twice_its_forward() -> None:
    net, x = LSTMNet(), torch.zeros(3, 5, 8)
    counts = count_run(net, lambda: net(x).sum().backward())
    assert counts.macs == 3 * LSTM_MACS


@pytest.mark.parametrize("op", ["aten.mkldnn_rnn_layer", "aten.lstm", "aten.gru", "aten.rnn_tanh",
                                "aten._cudnn_rnn", "aten.miopen_rnn", "aten._thnn_fused_lstm_cell",
                                "aten.mkldnn_rnn_layer_backward", "aten._cudnn_rnn_backward"])
def test_recurrent_ops_are_counted_or_refused(op: str) -> None:
    assert flop_formulas.carries_macs(op)
    formulas = {str(k) for k in flops._formulas()}
    assert op in formulas  # counted; any other recurrent op is refused by the audit (carries_macs)


def test_an_unformulated_recurrent_op_is_refused() -> None:
    assert flop_formulas.carries_macs("aten.quantized_lstm_cell")
    assert "aten.quantized_lstm_cell" not in {str(k) for k in flops._formulas()}


# --- 5. memory: shared modules, tied weights, head-less models, auxiliary logits -----------------------------------


class SharedConvNet(nn.Module):
    """One positional-encoding conv held by two stages (CoaT's shared ``ConvPosEnc``)."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stage1 = nn.ModuleDict({"pos": shared, "mix": nn.Conv2d(4, 4, 1)})
        self.stage2 = nn.ModuleDict({"pos": shared, "mix": nn.Conv2d(4, 4, 1)})
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in (self.stage1, self.stage2):
            x = stage["mix"](stage["pos"](x))
        return self.head(x.mean((2, 3)))


class TiedNet(nn.Module):
    """Tied input and output embeddings: one (64 x 32) matrix used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 64, 4, stride=4, bias=False)
        self.embed = nn.Linear(64, 32, bias=False)
        self.unembed = nn.Linear(32, 64, bias=False)
        self.unembed.weight = self.embed.weight  # the same Parameter; .T use below
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = t @ self.embed.weight.T
        t = t @ self.unembed.weight
        return self.head(t.mean(1))


class HeadlessNet(nn.Module):
    """``num_classes=0``: pooled features (6 wide) instead of logits, as timm builds eva02_tiny's MIM weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


class FeatureMapNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AuxLogitsNet(nn.Module):
    """Main and auxiliary logits in train mode, the main ones alone in eval (torchvision's googlenet)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, padding=1)
        self.aux = nn.Linear(8, 10)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x).mean((2, 3))
        return (self.fc(f), self.aux(f)) if self.training else self.fc(f)


@register_model("t22_shared", default_img_size=16)
def shared_net() -> nn.Module:
    return SharedConvNet()


@register_model("t22_tied", default_img_size=16)
def tied_net() -> nn.Module:
    return TiedNet()


@register_model("t22_headless", default_img_size=16)
def headless_net() -> nn.Module:
    return HeadlessNet()


@register_model("t22_featuremap", default_img_size=16)
def featuremap_net() -> nn.Module:
    return FeatureMapNet()


@register_model("t22_aux", default_img_size=16)
def aux_net() -> nn.Module:
    return AuxLogitsNet()


def _unique(net: nn.Module) -> tuple[int, int]:
    """(parameter elements, parameter tensors), each shared tensor once."""
    params = list(net.parameters())  # deduplicated by identity
    return sum(p.numel() for p in params), len(params)


def _same_as_memtracker(cfg: StepConfig) -> None:
    predicted, measured = predict_step(cfg), measure_step(cfg)
    assert predicted.peak_bytes == measured.peak_bytes, (predicted.breakdown, measured.breakdown)
    for cat in CATEGORIES:
        assert abs(predicted.breakdown[cat] - measured.breakdown[cat]) <= 4, cat  # the loss gradient's scalar


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_a_submodule_shared_by_two_parents_is_converted_once(mode: str) -> None:
    cfg = StepConfig("t22_shared", batch_size=2, mode=mode)
    n, _ = _unique(SharedConvNet())
    assert predict_step(cfg).breakdown["params"] == 4 * n
    _same_as_memtracker(cfg)


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_tied_weights_are_counted_once(mode: str) -> None:
    n, tensors = _unique(TiedNet())
    assert n == 3 * 64 * 16 + 64 * 32 + 64 * 10 + 10  # the tied matrix once
    # batch 64: activations outweigh the weights, so the peak falls in the backward, before the optimizer's
    # own temporaries exist, and the breakdown at the peak holds exactly the state
    cfg = StepConfig("t22_tied", batch_size=64, mode=mode)
    pred = predict_step(cfg)
    assert pred.breakdown["params"] == 4 * n
    if mode == "train":
        assert pred.peak_phase == "backward"
        assert pred.breakdown["optimizer_state"] == 2 * 4 * n + 4 * tensors
    _same_as_memtracker(cfg)


@register_model("t22_lstm", default_img_size=16)
def lstm_net() -> nn.Module:
    return ImageLSTM()


class ImageLSTM(nn.Module):
    """Rows of the image as a sequence: the LSTM's flat weight list must follow its converted parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(48, 16, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.permute(0, 2, 1, 3).flatten(2)  # (B, 16 rows, 3 x 16)
        return self.fc(self.rnn(seq)[0][:, -1])


def test_lstm_inference_memory_prediction_equals_memtracker() -> None:
    # Inference only: in a train step oneDNN's fused LSTM keeps a workspace for backward that the fake-tensor
    # run (which decomposes the LSTM into per-step ops) does not have; that prediction is not claimed here.
    _same_as_memtracker(StepConfig("t22_lstm", batch_size=4, mode="inference"))


def test_a_headless_model_trains_against_labels_within_its_width() -> None:
    """The step predicted is one that runs: measure_step would fail with 'Target ... out of bounds' otherwise."""
    _same_as_memtracker(StepConfig("t22_headless", batch_size=4, mode="train"))


def test_a_model_without_logits_is_refused_for_training() -> None:
    with pytest.raises(ConfigError, match=r"needs \(batch, classes\) logits"):
        predict_step(StepConfig("t22_featuremap", batch_size=2, mode="train"))
    assert predict_step(StepConfig("t22_featuremap", batch_size=2, mode="inference")).peak_bytes > 0


def test_auxiliary_logits_take_part_in_the_train_step() -> None:
    n, tensors = _unique(AuxLogitsNet())
    cfg = StepConfig("t22_aux", batch_size=64, mode="train")
    pred = predict_step(cfg)
    assert pred.peak_phase == "backward"
    assert pred.breakdown["optimizer_state"] == 2 * 4 * n + 4 * tensors  # the aux head has state too
    _same_as_memtracker(cfg)


# --- 6. conventions -------------------------------------------------------------------------------------------------


def test_convention_names_are_checked() -> None:
    assert parse_convention("macs") == ("macs",)
    assert parse_convention("deploy,fvcore") == ("fvcore", "deploy")
    assert parse_convention("eval-params") == ("macs", "eval_params")
    for bad in ("flops", "macs,fvcore", ""):
        with pytest.raises(ConfigError, match="convention"):
            parse_convention(bad)


def test_eval_params_leave_out_what_does_not_run_in_eval() -> None:
    report = analyze("t22_aux", backward=False, convention="eval_params")
    assert report.params == 3 * 8 * 9 + 8 + 8 * 10 + 10  # body and fc; the aux head runs only in train mode
    assert report.convention_detail["params_all"] == report.params + 8 * 10 + 10
    assert report.summary()["convention"] == "macs,eval_params"


class RepBlock(nn.Module):
    """A 3x3 and a 1x1 branch summed (RepVGG, Ding et al. 2021), fused into one 3x3 conv for inference: the 1x1
    kernel is the centre of a 3x3 one, and the biases add."""

    def __init__(self) -> None:
        super().__init__()
        self.k3 = nn.Conv2d(4, 4, 3, padding=1)
        self.k1 = nn.Conv2d(4, 4, 1)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused(x) if self.fused is not None else self.k3(x) + self.k1(x)

    def reparameterize(self) -> None:
        fused = nn.Conv2d(4, 4, 3, padding=1)  # on the default device, as timm's blocks create theirs
        fused.weight.data = self.k3.weight + nn.functional.pad(self.k1.weight, [1, 1, 1, 1])
        assert self.k3.bias is not None and self.k1.bias is not None and fused.bias is not None
        fused.bias.data = self.k3.bias + self.k1.bias
        self.fused = fused
        del self.k3, self.k1


class RepNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1, bias=False)
        self.block = RepBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.stem(x)).mean((1, 2, 3))[:, None]


@register_model("t22_rep", default_img_size=16)
def rep_net() -> nn.Module:
    return RepNet()


def test_deploy_counts_the_reparameterised_form_on_meta() -> None:
    train_form = analyze("t22_rep", backward=False)
    deploy = analyze("t22_rep", backward=False, convention="deploy")
    pixels = 16 * 16
    assert train_form.macs == (3 * 4 + 4 * 4 * 9 + 4 * 4) * pixels
    assert deploy.macs == (3 * 4 + 4 * 4 * 9) * pixels
    assert deploy.params == 3 * 4 + 4 * 4 * 9 + 4
    assert deploy.summary()["convention"] == "macs,deploy"


def test_deploy_is_refused_for_a_model_without_a_deploy_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "t22_aux", "--convention", "deploy"]) == 2
    assert "no deploy (re-parameterised) form" in capsys.readouterr().err


@pytest.mark.slow  # a full-size model: seconds
def test_fvcore_convention_reproduces_timms_table_for_mobilenetv3() -> None:
    """timm's results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv: mobilenetv3_large_100 at 224 px,
    infer_gmacs 0.23, param_count 5.48. torchvision's MobileNet_V3_Large_Weights.IMAGENET1K_V1 (the same
    network, 5,483,032 params): _ops 0.217 multiply-adds."""
    default = analyze("mobilenetv3_large_100", backward=False)
    assert default.params == 5_483_032
    assert abs(default.macs / 1e9 - 0.217) <= 0.0005
    assert default.summary()["convention"] == "macs"
    fv = analyze("mobilenetv3_large_100", backward=False, convention="fvcore")
    assert round(fv.macs / 1e9, 2) == 0.23 != round(default.macs / 1e9, 2)
    assert fv.summary()["convention"] == "fvcore"
    diff = fv.convention_detail["difference_by_op"]
    assert diff["multiply_adds_counted_differently"] == 0
    # fvcore adds one per element for each batch norm (eval) and one per input element for the pooling
    assert fv.macs == default.macs + diff["batch_norm"] + diff["adaptive_avg_pool2d"]
    assert diff["adaptive_avg_pool2d"] == 960 * 7 * 7  # the final pooling over 960 x 7 x 7


def test_cli_convention_is_in_the_json_and_a_bad_one_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["flops", "t22_rep", "--convention", "deploy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["convention"] == "macs,deploy" and out["macs"] == (3 * 4 + 4 * 4 * 9) * 16 * 16
    assert main(["flops", "t22_rep", "--convention", "gflops"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "valid names are macs, fvcore, deploy, eval_params" in err
