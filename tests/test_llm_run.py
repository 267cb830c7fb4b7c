"""rooflens.llm: prefill and decode of a Llama-2-7B built by transformers on the meta device, with every
number derived by hand below (issue 12's "tests that must pass")."""

from __future__ import annotations

import math

import pytest
import torch
from test_calibrated import make_spec

from rooflens.errors import InputError
from rooflens.formulas.matmul import expected_experts
from rooflens.llm import CONFIGS, build_model
from rooflens.llm.run import llm, phase_bytes

transformers = pytest.importorskip("transformers")

# Llama-2-7B (meta-llama/Llama-2-7b-hf config.json): d = 4096, FFN 11008, 32 layers, 32 heads of 128,
# vocabulary 32000, untied LM head; fp16.
D, FFN, LAYERS, VOCAB = 4096, 11008, 32, 32000
# linear MACs per token and layer: q, k, v, o 4 x 4096 x 4096 = 67,108,864; gate, up, down 3 x 4096 x 11008
# = 135,266,304; together 202,375,168; x 32 layers = 6,476,005,376. LM head 4096 x 32000 = 131,072,000.
LAYER_MACS = 4 * D * D + 3 * D * FFN
assert LAYER_MACS * LAYERS == 6_476_005_376
HEAD_MACS = D * VOCAB
PARAMS = 6_738_415_616  # embeddings 131,072,000 + 32 x (202,375,168 + 2 x 4096 norms) + 4096 + LM head 131,072,000
P, G = 2048, 128
A100_BANDWIDTH = 2039e9  # a100-80gb in the catalogue: 2039 GB/s, 80 GB (80e9 bytes), fp16 peak 312 TFLOP/s


def llama_2_7b(kv_heads: int = 32, layers: int = LAYERS) -> torch.nn.Module:
    config = transformers.LlamaConfig(hidden_size=D, intermediate_size=FFN, num_hidden_layers=layers,
                                      num_attention_heads=32, num_key_value_heads=kv_heads, vocab_size=VOCAB,
                                      max_position_embeddings=4096)
    with torch.device("meta"):
        return transformers.LlamaForCausalLM._from_config(config, attn_implementation="sdpa",
                                                          dtype=torch.float16).eval()


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    return llm(llama_2_7b(), hardware="a100-80gb", prompt=P, gen=G, batch=1, name="llama-2-7b")


def test_prefill_macs_by_hand(run) -> None:  # type: ignore[no-untyped-def]
    # P x linear MACs + the LM head on the last token only + attention 2 P^2 d per layer (dense causal)
    # 2048 x 6,476,005,376 + 131,072,000 + 32 x 2 x 2048^2 x 4096 = 13,262,990,082,048 + 1,099,511,627,776
    assert run.prefill.total().macs == P * LAYER_MACS * LAYERS + HEAD_MACS + LAYERS * 2 * P * P * D
    assert run.prefill.total().macs == 14_362_501_709_824
    assert run.prefill.params.total == PARAMS


def test_decode_step_macs_by_hand(run) -> None:  # type: ignore[no-untyped-def]
    # one token: linear 6,476,005,376 + head 131,072,000; attention over the L cached tokens and the new one:
    # 2 (L + 1) d per layer = 32 x 2 x 2049 x 4096 = 537,133,056 at L = 2048
    # generating G tokens: the prefill gives the first, then G - 1 steps at contexts P .. P + G - 2
    for report, context in ((run.decode_first, P), (run.decode_last, P + G - 2)):
        assert report.total().macs == LAYER_MACS * LAYERS + HEAD_MACS + LAYERS * 2 * (context + 1) * D
    assert run.decode_first.total().macs == 7_144_210_432


def test_kv_cache_and_weights_by_hand(run) -> None:  # type: ignore[no-untyped-def]
    # K and V, 32 layers, 4096 wide, 2 bytes: 2 x 32 x 4096 x 2 = 524,288 bytes per token;
    # 1,073,741,824 at 2048 tokens; the batch of 1 at the end: 2048 + 128 - 1 = 2175 tokens cached (the last
    # token generated is never fed back)
    assert run.memory.kv_bytes_per_token == 2 * LAYERS * D * 2 == 524_288
    assert run.memory.kv_bytes_per_token * 2048 == 1_073_741_824
    assert run.memory.kv_bytes == run.memory.kv_bytes_per_sequence == 524_288 * (P + G - 1)
    assert run.memory.weight_bytes == PARAMS * 2
    assert run.memory.fits is True


def test_decode_is_memory_bound_at_one_flop_per_byte_and_prefill_compute_bound(run) -> None:  # type: ignore[no-untyped-def]
    # a decode step's linear layers: 2 x 4096 x 4096 FLOPs over 2 x 4096 x 4096 weight bytes (+ one token) ~ 1
    q_proj = next(r for r in run.decode_first.records if r.module.endswith("layers.0.self_attn.q_proj"))
    assert q_proj.cost.intensity == pytest.approx(1.0, rel=0.01)
    assert run.decode_first.roofline.total.memory_bound_share > 0.99
    # prefill at 2048 tokens: compute-bound as a whole, and every matrix product of the layers on the roof (the
    # element-wise operators, norms, activations, rotary embeddings stay memory-bound: about a sixth of its time;
    # so does the LM head, on the last token only)
    assert run.prefill.roofline.total.bound.value == "compute"
    products = [t for r, t in zip(run.prefill.records, run.prefill.roofline.ops, strict=True)
                if r.op == "aten.mm" and r.module != "lm_head"]
    assert products and all(t.bound.value == "compute" for t in products)
    # the step time is (weights + KV read) / bandwidth within 5 %: 13,476,831,232 + 2 x 32 x 4096 x 2049 x 2
    weights_and_kv = PARAMS * 2 + 2 * LAYERS * D * (P + 1) * 2
    assert run.decode_first.roofline.total.seconds == pytest.approx(weights_and_kv / A100_BANDWIDTH, rel=0.05)


def test_mfu_and_mbu_of_each_phase(run) -> None:  # type: ignore[no-untyped-def]
    data = run.as_dict()
    decode, prefill = data["decode_first"], data["prefill"]
    # a decode step on the roofline: every byte at the full bandwidth (MBU 1 for memory-bound operators);
    # its FLOPs, 2 x 7.14 G at 1 FLOP/byte, use well under 1 % of the 312 TFLOP/s peak
    assert decode["mbu"] == pytest.approx(1.0, rel=1e-3) and decode["mfu"] < 0.01
    # the prefill: FLOPs / (time x peak), below 1 because its memory-bound element-wise operators add time
    assert prefill["mfu"] == pytest.approx(prefill["flops"] / prefill["roofline_seconds"] / 312e12)
    assert 0.5 < prefill["mfu"] < 1


def test_generation_sums_the_steps_exactly(run) -> None:  # type: ignore[no-untyped-def]
    assert len(run.step_seconds) == G - 1  # the prefill gives the first of the G tokens
    assert run.step_seconds[0] == pytest.approx(run.decode_first.roofline.total.seconds, rel=1e-12)
    assert run.step_seconds[-1] == pytest.approx(run.decode_last.roofline.total.seconds, rel=1e-12)
    assert all(a <= b for a, b in zip(run.step_seconds, run.step_seconds[1:]))  # more context, more bytes
    assert run.tpot_seconds == pytest.approx(sum(run.step_seconds) / (G - 1))
    assert run.e2e_seconds == pytest.approx(run.ttft_seconds + sum(run.step_seconds))
    assert run.tokens_per_second == pytest.approx(1 / run.tpot_seconds)
    # one token: the prefill alone; the TPOT is the step a further token would take
    one = llm(llama_2_7b(layers=2), hardware="a100-80gb", prompt=64, gen=1)
    assert one.step_seconds == () and one.e2e_seconds == one.ttft_seconds
    assert one.tpot_seconds == one.decode_first.roofline.total.seconds
    with pytest.raises(Exception, match="context=-1 must be a whole number"):
        one.decode(-1)
    # a step analysed on its own at the middle context costs what the interpolation says
    middle = P + 63
    assert run.decode(middle).roofline.total.seconds == pytest.approx(run.step_seconds[63], rel=1e-9)


def test_bytes_by_what_they_are(run) -> None:  # type: ignore[no-untyped-def]
    decode = phase_bytes(run.decode_first)
    # KV read: K and V of the 2048 cached tokens and the new one, 32 layers, 4096 wide, 2 bytes:
    # 2 x 32 x 4096 x 2049 x 2 = 1,074,266,112 (the cache's integer length counters are not KV)
    assert decode["kv_bytes_read"] == 2 * LAYERS * D * (P + 1) * 2
    # KV written: one token's K and V per layer, 2 x 32 x 4096 x 2 = 524,288
    assert decode["kv_bytes_written"] == 2 * LAYERS * D * 2
    # weights: every linear weight once at 2 bytes (6,607,077,376 x 2 = 13,214,154,752; the LM head included),
    # the 65 norm weights (65 x 8,192), the one embedding row the token looks up (8,192); then a few hundred
    # bytes of indices and the rotary embedding's inverse frequencies
    weights = (LAYER_MACS * LAYERS + HEAD_MACS) * 2 + 65 * D * 2 + D * 2
    assert weights <= decode["weight_bytes_read"] <= weights + 300
    total = run.decode_first.total()
    assert sum(decode.values()) == total.bytes_read + total.bytes_written
    # the prefill reads no cache; what its k/v projections leave in the cache is its KV written: 2048 tokens
    prefill = phase_bytes(run.prefill, cache_kept_bytes=run.memory.kv_bytes_prompt)
    assert prefill["kv_bytes_read"] == 0
    assert prefill["kv_bytes_written"] == run.memory.kv_bytes_prompt == 1_073_741_824


def test_weight_only_and_kv_quantization_by_hand() -> None:
    # 2 layers: embeddings 131,072,000 + 2 x (202,375,168 + 2 x 4096) + 4096 + LM head 131,072,000 = 666,914,816
    run = llm(llama_2_7b(layers=2), hardware="a100-80gb", prompt=64, gen=2, weight_bits=4, kv_bits=8,
              weight_group=None)
    assert run.memory.weight_bytes == 666_914_816 // 2  # 4 bits a weight (scales not counted: weight_group=None)
    assert run.memory.kv_bytes_per_token == 2 * 2 * D * 1  # K and V, 2 layers, 4096, 1 byte
    decode = phase_bytes(run.decode_first)
    # 65 cached + new tokens at 1 byte: 2 x 2 x 4096 x 65 = 1,064,960
    assert decode["kv_bytes_read"] == 2 * 2 * D * 65
    # the linear weights at half a byte: (2 x 202,375,168 + 131,072,000) / 2 = 267,911,168; norms 5 x 2,048;
    # the embedding row 2,048
    weights = (2 * LAYER_MACS + HEAD_MACS) // 2 + 5 * D // 2 + D // 2
    assert weights <= decode["weight_bytes_read"] <= weights + 300
    assert run.decode_first.total().macs == llm(llama_2_7b(layers=2), hardware="a100-80gb", prompt=64,
                                                 gen=2).decode_first.total().macs  # compute unchanged


def test_group_wise_scales_in_the_weight_bytes_by_hand() -> None:
    # the 2-D weights of 2 layers: 666,914,816 - 5 norms x 4096 = 666,894,336; every row (4096 or 11008 =
    # 86 x 128 long) splits into groups of 128, one 2-byte scale each: 666,894,336 / 128 x 2 = 10,420,224
    run = llm(llama_2_7b(layers=2), hardware="a100-80gb", prompt=64, gen=2, weight_bits=4)  # groups of 128
    assert run.memory.weight_bytes == 666_914_816 // 2 + 10_420_224 == 343_877_632
    # a decode step reads the linear weights with their scales, (2 x 202,375,168 + 131,072,000) x (1/2 + 2/128)
    # = 267,911,168 + 8,372,224, and one embedding row, 4096 / 2 + 4096 / 128 x 2 = 2,112; norms 5 x 2,048
    linear = 2 * LAYER_MACS + HEAD_MACS
    weights = linear // 2 + linear // 64 + 2_112 + 5 * D // 2
    assert weights <= phase_bytes(run.decode_first)["weight_bytes_read"] <= weights + 300
    # one scale per row: rows of the embedding 32,000, of each layer 4 x 4096 + 2 x 11008 + 4096 = 42,496,
    # of the LM head 32,000: 148,992 x 2 bytes = 297,984
    per_row = llm(llama_2_7b(layers=2), hardware="a100-80gb", prompt=64, gen=2, weight_bits=4, weight_group=-1)
    assert per_row.memory.weight_bytes == 666_914_816 // 2 + 297_984
    assert run.as_dict()["weight_group"] == 128 and per_row.as_dict()["weight_group"] == -1


def test_w8a8_runs_the_products_at_the_int8_peak() -> None:
    fp16 = llm(llama_2_7b(layers=2), hardware="a100-80gb", prompt=2048, gen=2)
    int8 = llm(llama_2_7b(layers=2), hardware="a100-80gb", prompt=2048, gen=2, precision="int8", weight_group=-1)
    assert int8.prefill.roofline.peak_flops_per_s == 624e12 == 2 * fp16.prefill.roofline.peak_flops_per_s
    assert int8.prefill.total().macs == fp16.prefill.total().macs  # the same work
    # weights at one byte with a scale per row (297,984 bytes, as above); the KV cache stays 16-bit
    assert int8.memory.weight_bytes == 666_914_816 + 297_984
    assert int8.memory.kv_bytes_per_token == fp16.memory.kv_bytes_per_token == 2 * 2 * D * 2
    # the prefill at 2048 tokens is compute-bound in its products: their time halves at twice the peak
    prods = [(a, b) for a, b in zip(fp16.prefill.roofline.ops, int8.prefill.roofline.ops, strict=True)
             if a.bound.value == "compute" and b.bound.value == "compute"]
    assert len(prods) >= 7 * 2 and all(math.isclose(b.seconds * 2, a.seconds) for a, b in prods)
    # activations in memory are 16-bit: the residual stream entering the first layer is 2048 x 4096 x 2 bytes
    assert any(t.nbytes == 2048 * D * 2 for r in int8.prefill.records for t in r.outputs)


def test_a_measured_device_gives_the_calibrated_estimate() -> None:
    spec = make_spec()  # tests/test_calibrated.py's hand-built measured CPU
    run = llm(llama_2_7b(layers=1), hardware=spec, prompt=16, gen=5, precision="fp32")
    assert run.estimate is not None and run.estimate.kind == "calibrated on the measured device"
    assert run.prefill.calibrated is not None and run.decode_first.calibrated is not None
    assert run.estimate.prefill_seconds == run.prefill.calibrated.total_seconds
    # 4 steps at contexts 16 .. 19, on the line through the first and the last analysed step
    a, b = run.decode_first.calibrated.total_seconds, run.decode_last.calibrated.total_seconds
    assert run.estimate.step_seconds == pytest.approx([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b])
    assert any("calibrated on the measured device" in n for n in run.notes)


def test_max_batch_by_hand(run) -> None:  # type: ignore[no-untyped-def]
    # the prefill's peak beyond its cache is at the last layer's MLP: gate, up, SiLU(gate) and their product,
    # 2048 x 11008 x 2 bytes = 45,088,768 each, beside the residual stream (2048 x 4096 x 2 = 16,777,216):
    # at least 4 x 45,088,768 + 16,777,216 = 197,132,288 bytes, a few MB more for norms and logits
    act = run.memory.activation_bytes
    assert 4 * P * FFN * 2 + P * D * 2 <= act <= 4 * P * FFN * 2 + P * D * 2 + 10_000_000
    # per sequence: the larger of its KV cache at the end (524,288 x 2,175 = 1,140,326,400) and its prefill
    # (cache of 2,048 tokens 1,073,741,824 + the activations); (80e9 - 13,476,831,232) // that
    per_sequence = max(524_288 * (P + G - 1), 1_073_741_824 + act)
    assert run.max_batch == (80_000_000_000 - PARAMS * 2) // per_sequence == 52
    assert run.memory.total_bytes == PARAMS * 2 + 1_073_741_824 + act


def test_gqa_quarters_the_kv_cache_and_the_kv_projections() -> None:
    # 8 KV heads of 32: k and v project to 8 x 128 = 1024, a quarter of 4096
    mha = llm(llama_2_7b(layers=2), hardware="a100-80gb", prompt=64, gen=2)
    gqa = llm(llama_2_7b(kv_heads=8, layers=2), hardware="a100-80gb", prompt=64, gen=2)
    assert gqa.memory.kv_bytes_per_token * 4 == mha.memory.kv_bytes_per_token == 2 * 2 * D * 2

    def macs(run, name):  # type: ignore[no-untyped-def]
        return next(r.cost.macs for r in run.decode_first.records if r.module.endswith(name))

    assert macs(gqa, "layers.0.self_attn.k_proj") * 4 == macs(mha, "layers.0.self_attn.k_proj") == D * D
    assert macs(gqa, "layers.0.self_attn.q_proj") == macs(mha, "layers.0.self_attn.q_proj")


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_shipped_config_runs_both_phases(config: str) -> None:
    run = llm(build_model(config, layers=2), hardware="a100-80gb", prompt=32, gen=2, name=config)
    for report in (run.prefill, run.decode_first, run.decode_last):
        assert report.unsupported_ops() == {} and report.total().macs > 0
    assert run.memory.kv_bytes_per_token > 0 and run.ttft_seconds > 0 and run.tpot_seconds > 0


def test_a_module_that_is_not_a_transformers_decoder_is_named() -> None:
    with pytest.raises(Exception, match="Linear is not a transformers causal LM"):
        llm(torch.nn.Linear(4, 4), hardware="a100-80gb", prompt=8, gen=1)


def test_bad_input_is_named() -> None:
    with pytest.raises(Exception, match="prompt=0 must be a whole number >= 1"):
        llm(llama_2_7b(layers=1), hardware="a100-80gb", prompt=0, gen=1)
    with pytest.raises(InputError, match="precision 'fp8'"):
        llm(llama_2_7b(layers=1), hardware="a100-80gb", prompt=8, gen=1, precision="fp8")
    with pytest.raises(InputError, match="weight_group=0 must be"):
        llm(llama_2_7b(layers=1), hardware="a100-80gb", prompt=8, gen=1, weight_bits=4, weight_group=0)


def test_tensor_parallel_halves_weights_and_kv_and_adds_the_all_reduces_by_hand() -> None:
    config = transformers.LlamaConfig(hidden_size=D, intermediate_size=FFN, num_hidden_layers=LAYERS,
                                      num_attention_heads=32, num_key_value_heads=32, vocab_size=VOCAB)
    one = llm(config, hardware="a100-80gb", prompt=P, gen=2)
    two = llm(config, hardware="a100-80gb", prompt=P, gen=2, tp=2)
    # per device: the linear layers, embedding and LM head halved, the 65 norms of 4096 replicated:
    # (6,738,415,616 - 266,240) / 2 + 266,240 = 3,369,340,928 parameters, 2 bytes each
    assert two.prefill.params.total == (PARAMS - 65 * D) // 2 + 65 * D == 3_369_340_928
    assert two.memory.weight_bytes == 3_369_340_928 * 2
    assert two.memory.kv_bytes_per_token * 2 == one.memory.kv_bytes_per_token == 524_288  # 16 of 32 KV heads
    assert two.decode_first.total().macs * 2 == pytest.approx(one.decode_first.total().macs, rel=1e-3)
    # all-reduces: 2 a layer + the embedding's = 65 a pass; a decode step moves one token's hidden vector,
    # 4096 x 2 bytes = 8,192 bytes each; a ring over 2 devices sends 2 (2 - 1) / 2 = 1 x that at 300 GB/s
    # (the A100's NVLink, one direction): 65 x 8,192 / 300e9 = 1.7749 us a step; the prefill 2048 x that
    assert two.allreduce_step_seconds == pytest.approx(65 * 8_192 / 300e9)
    assert two.allreduce_prefill_seconds == pytest.approx(65 * 8_192 * P / 300e9)
    assert two.ttft_seconds == pytest.approx(two.prefill.roofline.total.seconds + 65 * 8_192 * P / 300e9)
    with pytest.raises(Exception, match="tp=3 does not divide the model's 32 attention heads"):
        llm(config, hardware="a100-80gb", prompt=8, gen=1, tp=3)
    with pytest.raises(Exception, match="needs the device-to-device bandwidth of rpi5"):
        llm(config, hardware="rpi5", prompt=8, gen=1, tp=2)


def test_moe_decode_reads_the_routed_experts_weights_by_hand() -> None:
    # Mixtral-8x7B (2 layers): 8 experts, top 2; each expert's gate+up (28,672 x 4,096) and down (4,096 x
    # 14,336) weights, fp16: (117,440,512 + 58,720,256) x 2 = 352,321,536 bytes an expert and a layer.
    # One token reaches 8 x (1 - (1 - 2/8)^1) = 2 experts; 2,048 tokens 8 x (1 - 0.75^2048) = 8 (all).
    run = llm(build_model("mixtral-8x7b", layers=2), hardware="a100-80gb", prompt=2048, gen=2)
    expert = (2 * 14_336 * 4_096 + 4_096 * 14_336) * 2
    assert expert == 352_321_536

    def expert_bytes(report):  # type: ignore[no-untyped-def]
        # what a grouped product reads beyond its routed rows and group offsets: the experts' weights
        return sum(r.cost.bytes_read - sum(t.nbytes for t in r.inputs if len(t.shape) != 3)
                   for r in report.records if r.op == "aten._grouped_mm")

    assert expert_bytes(run.decode_first) == 2 * 2 * expert  # 2 layers x the 2 experts one token reaches
    assert expert_bytes(run.prefill) == 2 * 8 * expert  # every expert
    assert "top 2 distinct experts" in run.notes[0]
    # two tokens: 8 x (1 - 0.75^2) = 8 x 0.4375 = 3.5 experts expected
    assert expected_experts(8, 2, 2) == pytest.approx(3.5)


def test_eager_estimate_from_the_devices_published_efficiency(run) -> None:  # type: ignore[no-untyped-def]
    # a100-80gb in the catalogue: matrix products at 0.869 of 312 TFLOP/s, memory at 0.83 of 2039 GB/s, 20 us
    # per operator launched; each operator max(FLOPs / achievable peak, bytes / achievable bandwidth) + 20 us
    def eager(report):  # type: ignore[no-untyped-def]
        total = 0.0
        for r in report.records:
            peak = 312e12 * (0.869 if r.family in ("matmul", "attention", "conv") else 1.0)
            total += max(r.cost.flops / peak, r.cost.bytes / (2039e9 * 0.83)) + 2e-5
        return total

    est = run.estimate
    assert est.next_step_seconds == pytest.approx(eager(run.decode_first), rel=1e-9)
    assert est.prefill_seconds == pytest.approx(eager(run.prefill), rel=1e-9)
    assert est.step_seconds[-1] == pytest.approx(eager(run.decode_last), rel=1e-9)
    # eager decode at batch 1 is dominated by the launches: 20 us x the step's operators
    assert est.next_step_seconds > len(run.decode_first.records) * 2e-5 > run.decode_first.roofline.total.seconds
    data = run.as_dict()["estimate"]
    assert data["tokens_per_second"] == pytest.approx(1 / est.tpot_seconds)
    # a device without published efficiency figures has no estimate
    assert llm(llama_2_7b(layers=1), hardware="t4", prompt=8, gen=2).estimate is None
