"""The GPU path, checked on CPU (and on CUDA where present): bf16, fused SDPA, torch.compile.

bf16 autocast with float32 accumulation in the fused loss, attention that can use the fused SDPA
kernels, and torch.compile with no graph breaks in the Transformer and bounded recompiles."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from nmt.compiling import compile_model
from nmt.loss import linear_cross_entropy
from nmt.models.backends import BACKENDS, build_model
from nmt.models.transformer import key_padding_mask
from nmt.search import SearchOptions, generate
from nmt.tokenizer import PAD_ID
from tests.conftest import model_config


def tiny(backend: str, device, dropout: float = 0.0):
    torch.manual_seed(0)
    cfg = model_config(
        backend,
        d_model=32,
        n_heads=4,
        d_ff=64,
        encoder_layers=2,
        decoder_layers=2,
        dropout=dropout,
        attention_dropout=0.0,
        max_len=64,
    )
    return build_model(cfg, 40, 40, True).to(device)


def batch(B: int, S: int, T: int, device, pad: bool = True):
    g = torch.Generator().manual_seed(B * 100 + S)
    src = torch.randint(4, 40, (B, S), generator=g)
    tgt_in, tgt_out = torch.randint(4, 40, (2, B, T), generator=g)
    if pad:
        src[0, S - 2 :] = PAD_ID
        tgt_out[-1, T - 3 :] = tgt_in[-1, T - 3 :] = PAD_ID
    return src.to(device), tgt_in.to(device), tgt_out.to(device)


def test_fused_loss_under_bf16_autocast_accumulates_in_float32(device):
    torch.manual_seed(0)
    h0, w0 = torch.randn(300, 16, device=device), torch.randn(50, 16, device=device)
    y = torch.randint(1, 50, (300,), device=device)
    y[::7] = PAD_ID
    h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = linear_cross_entropy(h, w, y, 0.1, chunk=64)
    loss.backward()
    assert loss.dtype == h.grad.dtype == w.grad.dtype == torch.float32
    # the reference sees the same bf16 product, then works in float32 as the fused loss does
    hr, wr = h0.clone().requires_grad_(), w0.clone().requires_grad_()
    logits = (hr.bfloat16() @ wr.bfloat16().t()).float()
    ref = F.cross_entropy(logits, y, ignore_index=PAD_ID, label_smoothing=0.1, reduction="sum")
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(h.grad, hr.grad, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(w.grad, wr.grad, rtol=2e-2, atol=2e-2)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        torch.testing.assert_close(linear_cross_entropy(h0, w0, y, 0.1, chunk=64), ref.detach())


def test_key_padding_mask_is_dropped_when_nothing_is_padded():
    assert key_padding_mask(torch.ones(3, 5, dtype=torch.bool)) is None
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    assert key_padding_mask(mask).shape == (3, 1, 1, 5)


def test_transformer_runs_without_the_math_attention_kernel(device):
    """Training and decoding take the fused kernels (flash / memory-efficient), never the
    unfused math path (on CUDA a float mask or an unsupported shape would force it)."""
    model = tiny("transformer", device, dropout=0.1)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        for pad in (True, False):
            src, tgt_in, tgt_out = batch(4, 9, 8, device, pad)
            model.train()
            model(src, tgt_in, tgt_out, 0.1).backward()
            model.eval()
            with torch.no_grad():
                for beam in (1, 3):
                    hyps = generate(model, src, SearchOptions(beam=beam), max_len=12)
                    assert len(hyps) == 4


@pytest.mark.slow
def test_transformer_training_step_has_no_graph_breaks():
    model = tiny("transformer", "cpu", dropout=0.1).train()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(*batch(3, 8, 9, "cpu"), 0.1)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_compiled_losses_match_eager_with_bounded_recompiles(backend):
    """Token-bucketed batches change (B, S, T) every step: the Transformer's layers compile
    once per layer class (two graphs for four layers); the RNNs fall back to eager around the
    cuDNN-style RNN ops. Eval mode (search) runs eagerly, without compiling."""
    import copy

    model = tiny(backend, "cpu").train()
    eager = copy.deepcopy(model)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = compile_model(model, backend="aot_eager")
    assert compiled is model and model.state_dict().keys() == eager.state_dict().keys()
    for B, S, T in ((3, 8, 9), (5, 16, 12), (2, 24, 20), (7, 11, 11)):
        args = batch(B, S, T, "cpu")
        loss = compiled(*args, 0.1)
        torch.testing.assert_close(loss, eager(*args, 0.1), rtol=1e-5, atol=1e-4)
        loss.backward()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    if backend == "transformer":
        assert graphs == 2
    model.eval()
    with torch.no_grad():
        generate(model, batch(2, 6, 5, "cpu")[0], SearchOptions(beam=2), max_len=8)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
def test_recompiles_are_recorded_with_the_guard_that_failed():
    from nmt.compiling import Recompiles

    recompiles = Recompiles.install()
    torch._dynamo.reset()
    model = compile_model(tiny("transformer", "cpu").train(), backend="aot_eager")
    for pad in (True, False):  # a key mask, then none: the layers' guard on it fails
        model(*batch(3, 8, 9, "cpu", pad), 0.1)
    lines = recompiles.take()
    assert len(lines) == 2  # once per layer class
    assert all(line.startswith("Recompiling function forward") for line in lines)
    assert all("mask" in line for line in lines)


@pytest.mark.slow
def test_compiled_training_logs_first_step_and_recompiles(toy_data_dir, tmp_path, monkeypatch):
    from nmt import training
    from tests.test_training import tiny_cfg

    inductor = training.compile_model  # a C++ build per graph: aot_eager checks the same wiring
    monkeypatch.setattr(training, "compile_model", lambda m: inductor(m, backend="aot_eager"))
    cfg = tiny_cfg(
        toy_data_dir,
        "train.max_steps=3",
        "train.valid_every=3",
        "train.valid_bleu=false",
        "train.best_metric=loss",
        "train.compile=true",
    )
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    training.train(cfg, tmp_path / "run", quiet=True)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "compile: first step after" in log
    report = next(line for line in log.splitlines() if "graph breaks" in line)
    recompiles = int(report.split(", ")[-1].split()[0])
    assert log.count("compile: at step") == recompiles


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_follows_fp32(toy_data_dir, tmp_path, precision):
    """Autocast runs on CPU too (fp16 with the grad scaler): same start, close losses."""
    from nmt.training import train
    from tests.test_training import tiny_cfg

    losses = {}
    for p in ("fp32", precision):
        cfg = tiny_cfg(
            toy_data_dir,
            "train.max_steps=4",
            "train.valid_every=4",
            "train.valid_bleu=false",
            "train.best_metric=loss",
            "train.device=cpu",
            f"train.precision={p}",
        )
        losses[p] = [loss for _, loss in train(cfg, tmp_path / p, quiet=True)["losses"]]
    assert len(losses[precision]) == 4
    assert all(torch.isfinite(torch.tensor(losses[precision])))
    torch.testing.assert_close(losses[precision][0], losses["fp32"][0], rtol=3e-2, atol=0)
    torch.testing.assert_close(losses[precision], losses["fp32"], rtol=0.1, atol=0)


def test_cuda_settings_leave_cudnn_attention_out_and_cpu_alone():
    from nmt.models.base import use_fast_cuda_kernels

    before = (torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        use_fast_cuda_kernels(torch.device("cpu"))
        assert torch.backends.cuda.cudnn_sdp_enabled()  # CPU runs change nothing global
        use_fast_cuda_kernels(torch.device("cuda", 0))
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before[0])
        torch.backends.cuda.matmul.allow_tf32 = before[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="kernel names need a GPU")
def test_cuda_attention_runs_flash_or_memory_efficient_kernels_not_cudnn():
    """With cuDNN's SDPA switched off (`use_fast_cuda_kernels`), a bf16 training step runs the
    flash kernel where no source is padded and the memory-efficient one under a key mask."""
    from torch.profiler import ProfilerActivity, profile

    from nmt.models.base import use_fast_cuda_kernels

    use_fast_cuda_kernels(torch.device("cuda"))
    model = tiny("transformer", "cuda", dropout=0.1).train()
    names = {}
    for pad in (False, True):
        src, tgt_in, tgt_out = batch(8, 16, 12, "cuda", pad)
        lengths = (src != PAD_ID).sum(1).cpu().numpy()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(src, tgt_in, tgt_out, 0.1, lengths)
            loss.backward()
            torch.cuda.synchronize()
        kernels = {e.key.lower() for e in prof.key_averages()}
        names[pad] = {k for k in kernels if any(w in k for w in ("flash", "fmha", "attention"))}
    assert not any("cudnn" in k for k in names[False] | names[True]), names
    assert any("flash" in k for k in names[False]), names[False]
    assert names[True], names[True]
