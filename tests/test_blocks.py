"""Math of the transformer building blocks: time embedding, RoPE, RMSNorm, masked attention."""
import math

import pytest
import torch

from blocks import (EmbedND, Modulation, ModulationOut, RMSNorm, SingleStreamBlock, apply_rope,
                    attention, rope, timestep_embedding)


def test_timestep_embedding_matches_formula():
    t = torch.tensor([0.0, 0.25, 0.999])
    dim = 8
    emb = timestep_embedding(t, dim)
    half = dim // 2
    for b, tb in enumerate(t.tolist()):
        for i in range(half):
            angle = 1000 * tb * math.exp(-math.log(10000) * i / half)
            assert emb[b, i].item() == pytest.approx(math.cos(angle), abs=1e-4)          # cos half first
            assert emb[b, half + i].item() == pytest.approx(math.sin(angle), abs=1e-4)   # then sin
    assert emb.shape == (3, dim)


def test_timestep_embedding_odd_dim_is_zero_padded():
    emb = timestep_embedding(torch.tensor([0.5]), 7)
    assert emb.shape == (1, 7) and emb[0, -1].item() == 0.0


def _rope_table(positions, axes_dim=(2, 4, 4), theta=10000):
    """positions (N, 3) -> table (1, 1, N, D/2, 2, 2)."""
    return EmbedND(sum(axes_dim), theta, axes_dim)(positions[None].float())


def test_rope_preserves_norms():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 10), torch.randn(2, 3, 5, 10)
    pe = _rope_table(torch.randint(0, 50, (5, 3)))
    q_rot, k_rot = apply_rope(q, k, pe)
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(k_rot.norm(dim=-1), k.norm(dim=-1))
    assert not torch.allclose(q_rot, q)  # it did rotate something


def test_rope_at_position_zero_is_identity():
    q = torch.randn(1, 2, 4, 10)
    q_rot, _ = apply_rope(q, q, _rope_table(torch.zeros(4, 3)))
    torch.testing.assert_close(q_rot, q)


def test_rope_score_depends_only_on_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 10), torch.randn(1, 1, 1, 10)

    def score(q_pos, k_pos):
        pe = _rope_table(torch.tensor([q_pos, k_pos]))
        q_rot, _ = apply_rope(q, q, pe[:, :, :1])
        _, k_rot = apply_rope(k, k, pe[:, :, 1:])
        return (q_rot * k_rot).sum().item()

    base = score([0, 3, 1], [0, 7, 5])
    assert score([0, 13, 4], [0, 17, 8]) == pytest.approx(base, abs=1e-4)       # same shift on every axis
    assert score([0, 103, 1], [0, 107, 5]) == pytest.approx(base, abs=1e-4)
    assert abs(score([0, 3, 1], [0, 8, 5]) - base) > 1e-3                         # another offset, another score


def test_rope_rejects_odd_axis_and_wrong_sum():
    with pytest.raises(ValueError, match="even"):
        rope(torch.zeros(3), 3, 10000)
    with pytest.raises(ValueError, match="sum"):
        EmbedND(12, 10000, [2, 4, 4])


def test_rmsnorm_gives_unit_root_mean_square():
    x = torch.randn(4, 16) * 7 + 3
    y = RMSNorm(16)(x)
    torch.testing.assert_close(y.pow(2).mean(dim=-1), torch.ones(4), atol=1e-4, rtol=1e-4)


def test_attention_mask_equals_dropping_the_key():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 10) for _ in range(3))
    pe = _rope_table(torch.randint(0, 9, (6, 3)))
    mask = torch.tensor([[True, False, True, True, False, True]])
    masked = attention(q, k, v, pe, mask)
    # rotate first, then drop the masked keys: the same as never having them
    q_rot, k_rot = apply_rope(q, k, pe)
    keep = mask[0]
    weights = torch.softmax(q_rot @ k_rot[:, :, keep].transpose(-1, -2) / math.sqrt(10), dim=-1)
    expected = (weights @ v[:, :, keep]).transpose(1, 2).reshape(1, 6, 20)
    torch.testing.assert_close(masked, expected, atol=1e-5, rtol=1e-5)


def test_single_block_with_zero_modulation_is_identity():
    block = SingleStreamBlock(32, 4, 4.0)
    torch.nn.init.zeros_(block.modulation.lin.weight)
    torch.nn.init.zeros_(block.modulation.lin.bias)
    x = torch.randn(2, 5, 32)
    pe = _rope_table(torch.randint(0, 9, (5, 3)), axes_dim=(2, 2, 4)).expand(2, -1, -1, -1, -1, -1)
    assert torch.equal(block(x, torch.randn(2, 32), pe), x)


@pytest.mark.parametrize("double", [True, False])
def test_modulation_names_follow_the_official_row_order(double):
    """lin's output rows are (shift, scale, gate) per sub-layer, in that order, as in the checkpoint."""
    dim = 4
    modulation = Modulation(dim, double)
    torch.nn.init.zeros_(modulation.lin.weight)
    with torch.no_grad():  # bias row block i holds the number i, so each chunk says where it came from
        modulation.lin.bias.copy_(torch.arange(modulation.multiplier).repeat_interleave(dim).float())
    outs = modulation(torch.randn(2, dim))
    assert len(outs) == (2 if double else 1)
    for i, out in enumerate(outs):
        assert isinstance(out, ModulationOut)
        for j, name in enumerate(("shift", "scale", "gate")):
            value = getattr(out, name)
            assert value.shape == (2, 1, dim)  # (B, 1, dim): broadcasts over the tokens
            assert torch.equal(value, torch.full((2, 1, dim), float(3 * i + j)))
