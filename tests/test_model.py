"""The FluxMusic transformer: official layout, presets, patching, adaLN-Zero, masking, batching."""
import math
from dataclasses import replace
import os

import pytest
import torch

from model import (PRESETS, FluxMusic, FluxMusicConfig, make_img_ids, make_txt_ids, patchify,
                   unpatchify)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the official layout table: every parameter name and shape of the released FluxMusic-Small
REFERENCE_TSV = os.path.join(ROOT, "reference", "fluxmusic_small_state_dict.tsv")
SMALL_CONFIG = PRESETS["small"]
# a few-thousand-parameter model with the same structure, for fast numerical tests
MINI = FluxMusicConfig(vec_in_dim=12, context_in_dim=20, hidden_size=32, num_heads=2, depth=2,
                       depth_single_blocks=2, axes_dim=[4, 6, 6])


def reference_shapes():
    """The TSV lists block 0 of each kind; blocks 1..N repeat its shapes."""
    shapes = {}
    with open(REFERENCE_TSV) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, shape = line.rstrip("\n").split("\t")
            shape = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
            for kind, count in (("double_blocks.0.", SMALL_CONFIG.depth),
                                ("single_blocks.0.", SMALL_CONFIG.depth_single_blocks)):
                if name.startswith(kind):
                    for i in range(count):
                        shapes[name.replace(".0.", f".{i}.", 1)] = shape
                    break
            else:
                shapes[name] = shape
    return shapes


def meta_model(config):
    with torch.device("meta"):  # shapes without memory: giant has 2.1 B parameters
        return FluxMusic(config)


@pytest.mark.parametrize("name,count", [("small", 142_333_984), ("base", 473_971_232),
                                        ("large", 840_628_256), ("giant", 2_109_904_928)])
def test_preset_parameter_counts(name, count):
    assert sum(p.numel() for p in meta_model(PRESETS[name]).parameters()) == count


def test_small_state_dict_matches_official_names_and_shapes():
    expected = reference_shapes()
    ours = {k: tuple(v.shape) for k, v in meta_model(SMALL_CONFIG).state_dict().items()}
    assert sum(torch.Size(s).numel() for s in expected.values()) == 142_333_984
    assert ours == expected


def test_official_layout_loads_strictly():
    torch.manual_seed(0)
    official = {k: torch.randn(s) for k, s in reference_shapes().items()}
    model = meta_model(SMALL_CONFIG)  # assign=True adopts the loaded tensors: no second 142 M init
    model.load_state_dict(official, strict=True, assign=True)
    assert torch.equal(model.single_blocks[15].linear2.weight, official["single_blocks.15.linear2.weight"])
    # the loaded model runs on a short clip: 4 latent frames x 16 rows -> 16 tokens, 3 text tokens
    with torch.no_grad():
        v = model.velocity(torch.randn(1, 8, 4, 16), torch.tensor([0.5]), torch.randn(1, 3, 4096), None,
                           torch.randn(1, 768))
    assert v.shape == (1, 8, 4, 16) and torch.isfinite(v).all()


def test_patchify_roundtrip_and_time_major_order():
    latent = torch.randn(2, 8, 12, 16)
    tokens = patchify(latent)
    assert tokens.shape == (2, 6 * 8, 32)
    assert torch.equal(unpatchify(tokens, 12, 16), latent)
    # token i*(F/2)+j holds the 2x2 patch at time rows 2i..2i+1, frequency rows 2j..2j+1, as (c, dt, df)
    i, j = 4, 3
    assert torch.equal(tokens[:, i * 8 + j], latent[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, 32))


def test_position_ids():
    ids = make_img_ids(2, 12, 16)
    assert ids.shape == (2, 48, 3)
    i, j = 4, 3
    assert ids[1, i * 8 + j].tolist() == [0.0, float(i), float(j)]
    assert torch.equal(make_txt_ids(2, 5), torch.zeros(2, 5, 3))


def test_time_id_scale_sets_the_fastest_rope_period():
    """Time ids i * s make RoPE's fastest time rotation s rad per token: with s = 2*pi/4 tokens four
    apart get the same rotation in that channel pair, and neighbours do not."""
    ids = make_img_ids(1, 16, 4, time_scale=2.5)
    assert ids[0, 3 * 2 + 1].tolist() == [0.0, 7.5, 1.0]
    config = replace(MINI, time_id_scale=2 * math.pi / 4)
    model = FluxMusic(config)
    table = model.pe_embedder(make_img_ids(1, 16, 4, time_scale=config.time_id_scale))[0, 0]
    fastest = config.axes_dim[0] // 2  # the first channel pair of the time axis
    token = lambda i: i * 2  # time patch i, frequency patch 0 (two frequency patches per time patch)
    assert torch.allclose(table[token(1), fastest], table[token(5), fastest], atol=1e-5)
    assert not torch.allclose(table[token(1), fastest], table[token(2), fastest], atol=1e-2)


def mini_inputs(batch=3, T=8, F=8, L=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(latent=torch.randn(batch, 8, T, F, generator=g), t=torch.rand(batch, generator=g),
                txt=torch.randn(batch, L, MINI.context_in_dim, generator=g),
                y=torch.randn(batch, MINI.vec_in_dim, generator=g))


def randomised_mini(seed=0):
    """A MINI model with every weight random, so no block is the identity."""
    torch.manual_seed(seed)
    model = FluxMusic(MINI)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


def test_velocity_uses_the_configs_time_id_scale():
    """The same weights under time_id_scale 2.5 give forward() with ids 2.5 * i, not the paper's ids."""
    model = randomised_mini(seed=2)
    inp = mini_inputs()
    with torch.no_grad():
        plain = model.velocity(inp["latent"], inp["t"], inp["txt"], None, inp["y"])
        model.config = replace(MINI, time_id_scale=2.5)
        scaled = model.velocity(inp["latent"], inp["t"], inp["txt"], None, inp["y"])
        by_hand = unpatchify(model.forward(patchify(inp["latent"]), make_img_ids(3, 8, 8, time_scale=2.5),
                                           inp["txt"], make_txt_ids(3, 5), inp["t"], inp["y"], None), 8, 8)
    torch.testing.assert_close(scaled, by_hand)
    assert not torch.allclose(scaled, plain, atol=1e-3)


def test_fresh_model_outputs_zero_and_blocks_are_identity():
    torch.manual_seed(0)
    model = FluxMusic(MINI)
    inp = mini_inputs()
    assert torch.equal(model.velocity(inp["latent"], inp["t"], inp["txt"], None, inp["y"]),
                       torch.zeros_like(inp["latent"]))
    img, txt, vec = torch.randn(3, 16, 32), torch.randn(3, 5, 32), torch.randn(3, 32)
    ids = torch.cat([make_txt_ids(3, 5), make_img_ids(3, 8, 8)], dim=1)
    pe = model.pe_embedder(ids)
    for block in model.double_blocks:
        out_img, out_txt = block(img, txt, vec, pe)
        assert torch.equal(out_img, img) and torch.equal(out_txt, txt)
    joint = torch.cat([txt, img], dim=1)
    for block in model.single_blocks:
        assert torch.equal(block(joint, vec, pe), joint)


def test_text_padding_with_mask_changes_nothing():
    model = randomised_mini()
    inp = mini_inputs(L=5)
    with torch.no_grad():
        plain = model.velocity(inp["latent"], inp["t"], inp["txt"], None, inp["y"])
        padded_txt = torch.cat([inp["txt"], 100 * torch.randn(3, 4, MINI.context_in_dim)], dim=1)
        mask = torch.tensor([[True] * 5 + [False] * 4] * 3)
        padded = model.velocity(inp["latent"], inp["t"], padded_txt, mask, inp["y"])
        unmasked = model.velocity(inp["latent"], inp["t"], padded_txt, None, inp["y"])
    assert plain.abs().mean() > 0.1
    torch.testing.assert_close(padded, plain, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked, plain, atol=1e-3)  # without the mask padding leaks in


def test_output_of_a_sample_does_not_depend_on_its_batch():
    model = randomised_mini(seed=1)
    inp = mini_inputs(batch=3)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] * 4 + [False]])
    with torch.no_grad():
        together = model.velocity(inp["latent"], inp["t"], inp["txt"], mask, inp["y"])
        for b in range(3):
            alone = model.velocity(inp["latent"][b:b + 1], inp["t"][b:b + 1], inp["txt"][b:b + 1],
                                   mask[b:b + 1], inp["y"][b:b + 1])
            torch.testing.assert_close(alone, together[b:b + 1], atol=1e-4, rtol=1e-4)


def test_velocity_accepts_scalar_time_and_time_matters():
    model = randomised_mini(seed=2)
    inp = mini_inputs(batch=2)
    with torch.no_grad():
        scalar = model.velocity(inp["latent"], 0.3, inp["txt"], None, inp["y"])
        vector = model.velocity(inp["latent"], torch.full((2,), 0.3), inp["txt"], None, inp["y"])
        later = model.velocity(inp["latent"], 0.7, inp["txt"], None, inp["y"])
    assert torch.equal(scalar, vector)
    assert not torch.allclose(scalar, later, atol=1e-3)


def test_forward_matches_velocity_on_tokens():
    model = randomised_mini(seed=3)
    inp = mini_inputs(batch=2, T=6, F=4)
    with torch.no_grad():
        tokens = model(patchify(inp["latent"]), make_img_ids(2, 6, 4), inp["txt"], make_txt_ids(2, 5),
                       inp["t"], inp["y"])
        full = model.velocity(inp["latent"], inp["t"], inp["txt"], None, inp["y"])
    assert tokens.shape == (2, 6, 32)
    torch.testing.assert_close(unpatchify(tokens, 6, 4), full)


def test_velocity_runs_through_the_forward_it_is_given():
    """Training passes the model wrapped by DDP or torch.compile as `forward`: velocity must call it,
    once, with the tokens and ids it would give its own forward."""
    model = randomised_mini(seed=4)
    inp = mini_inputs(batch=2)
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(args[0].shape)
        return model(*args, **kwargs)

    with torch.no_grad():
        plain = model.velocity(inp["latent"], inp["t"], inp["txt"], None, inp["y"])
        through = model.velocity(inp["latent"], inp["t"], inp["txt"], None, inp["y"], forward=wrapped)
    assert calls == [(2, 16, 32)] and torch.equal(through, plain)
    with torch.no_grad():
        doubled = model.velocity(inp["latent"], inp["t"], inp["txt"], None, inp["y"],
                                 forward=lambda *args, **kwargs: 2 * model(*args, **kwargs))
    torch.testing.assert_close(doubled, 2 * plain)


def test_bad_shapes_give_clear_errors():
    model = FluxMusic(MINI)
    inp = mini_inputs(batch=2)
    with pytest.raises(ValueError, match="time 7 and frequency 8 sizes must be multiples of 2"):
        patchify(torch.randn(1, 8, 7, 8))
    with pytest.raises(ValueError, match="time 8 and frequency 5 sizes must be multiples of 2"):
        patchify(torch.randn(1, 8, 8, 5))
    with pytest.raises(ValueError, match=r"\(B, C, T, F\)"):
        patchify(torch.randn(8, 8, 8))
    with pytest.raises(ValueError, match="8, T, F"):
        model.velocity(torch.randn(2, 4, 8, 8), inp["t"], inp["txt"], None, inp["y"])
    with pytest.raises(ValueError, match=r"input txt has shape \(2, 5, 7\)"):
        model.velocity(inp["latent"], inp["t"], torch.randn(2, 5, 7), None, inp["y"])
    with pytest.raises(ValueError, match=r"input y has shape \(2, 3\)"):
        model.velocity(inp["latent"], inp["t"], inp["txt"], None, torch.randn(2, 3))
    with pytest.raises(ValueError, match="txt_mask must be a bool tensor"):
        model.velocity(inp["latent"], inp["t"], inp["txt"], torch.ones(2, 5), inp["y"])
    with pytest.raises(ValueError, match="tokens"):
        model(inp["latent"], None, None, None, None, None)
    with pytest.raises(ValueError, match="unpatchify"):
        unpatchify(torch.randn(1, 10, 32), 8, 8)


def test_config_rejects_inconsistent_heads():
    with pytest.raises(ValueError, match="axes_dim"):
        FluxMusicConfig(hidden_size=64, num_heads=4, axes_dim=[8, 12, 12])
    with pytest.raises(ValueError, match="divisible"):
        FluxMusicConfig(hidden_size=50, num_heads=4)
