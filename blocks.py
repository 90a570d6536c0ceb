"""Transformer building blocks of FluxMusic (the FLUX "MMDiT" family), one small module each.

The music transformer sees three things: noisy music tokens x (2x2 patches of the VAE
latent), text tokens c (T5 features), and one vector per sample that says *when* we are on
the flow path and *what* the music should be roughly like (time t and the pooled CLAP
embedding y). Each kind of input enters the network in its own way:

1. Time, as a sinusoidal embedding of s = 1000·t with 256 channels (half = 128):

       f_i = 10000^(-i/half),  i = 0..half-1,     emb(t) = [cos(s·f_0..s·f_127), sin(s·f_0..s·f_127)]

   then an MLP (`MLPEmbedder`: Linear, SiLU, Linear). The pooled text y goes through another
   MLP and the two are added:  vec = MLP_t(emb(t)) + MLP_y(y).

2. `vec` steers every block by *adaptive LayerNorm modulation* (`Modulation`): a Linear map
   of SiLU(vec) gives a shift, a scale and a gate per channel (a `ModulationOut`), and a
   sub-layer f (attention or MLP) is applied as

       x <- x + gate * f((1 + scale) * LayerNorm(x) + shift).

   "adaLN-Zero": the Linear producing (shift, scale, gate) starts at zero, so gate = 0 and
   every block starts as the identity map. The network starts as a stack of no-ops and
   learns how much each block should contribute, which makes deep stacks train smoothly.

3. Position, by rotary embeddings (RoPE, `EmbedND`). Each token has integer ids on 3 axes
   (for music: 0, time-patch index, frequency-patch index; text tokens: all zeros). The head
   dimension is split into pieces of `axes_dim` channels, one piece per axis, and inside a
   piece every channel pair (x_2j, x_2j+1) is rotated by the angle  p·w_j,  w_j =
   theta^(-2j/d), where p is the token's id on that axis:

       [x'_2j  ]   [cos(p w_j)  -sin(p w_j)] [x_2j  ]
       [x'_2j+1] = [sin(p w_j)   cos(p w_j)] [x_2j+1].

   Rotating q at position p and k at position s gives  q'·k' = q·R(s - p)·k: the score
   depends only on the *relative* offset s - p, on each axis separately, and rotations
   keep vector lengths.

4. Text and music meet in attention over the joint sequence [text, music]:

       Attention(Q, K, V) = softmax(Q K^T / sqrt(d_head) + mask) V,

   with Q and K normalised per head by RMSNorm (`QKNorm`: x / sqrt(mean(x^2) + eps) * scale),
   which keeps attention logits from blowing up. Padded text tokens are removed as keys by
   a boolean mask, so padding changes nothing (the official code attends to padding).

`DoubleStreamBlock` keeps separate weights for the music ("img") and text ("txt") streams and
only mixes them inside the joint attention; `SingleStreamBlock` treats [text, music] as one
sequence and runs attention and the MLP in parallel from one fused Linear (`linear1`) with one
fused output Linear (`linear2`). `LastLayer` modulates and projects music tokens back to
patch channels. Module and parameter names follow the official checkpoint exactly.

References:
- Fei et al., "FLUX that Plays Music", 2024, arXiv 2409.00587 (FluxMusic: these blocks
  applied to mel-spectrogram latents).
- Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis",
  2024, arXiv 2403.03206 (SD3: separate text and image weights joined in one attention, and
  QK RMSNorm). FLUX.1, which adds the single-stream blocks, was released as code (Black
  Forest Labs, 2024) without a paper.
- Peebles & Xie, "Scalable Diffusion Models with Transformers", 2022, arXiv 2212.09748
  (DiT: adaLN modulation and the adaLN-Zero initialisation).
- Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021,
  arXiv 2104.09864 (RoPE).
"""

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

TIME_EMBED_DIM = 256  # width of the sinusoidal time features (official value)


# ----------------------------------------------------------------------------- time and vectors

def timestep_embedding(t, dim=TIME_EMBED_DIM, max_period=10000, time_factor=1000.0):
    """(B,) times in [0, 1] -> (B, dim) features [cos(s f), sin(s f)] with s = 1000 t."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    # scaling t up to 0..1000 makes the slowest frequencies turn through useful angles
    angles = time_factor * t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class MLPEmbedder(nn.Module):
    """Linear -> SiLU -> Linear: lifts a conditioning vector to the model width."""

    def __init__(self, in_dim, hidden_dim):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim)
        self.silu = nn.SiLU()
        self.out_layer = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, x):
        return self.out_layer(self.silu(self.in_layer(x)))


# ----------------------------------------------------------------------------- rotary positions

def rope(pos, dim, theta):
    """Rotation matrices for one axis: (..., N) positions -> (..., N, dim/2, 2, 2)."""
    if dim % 2:
        raise ValueError(f"each RoPE axis needs an even number of channels, got {dim}")
    omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim)
    angles = pos.double()[..., None] * omega  # float64: positions times frequencies lose no digits
    cos, sin = torch.cos(angles), torch.sin(angles)
    return torch.stack([cos, -sin, sin, cos], dim=-1).reshape(*angles.shape, 2, 2).float()


class EmbedND(nn.Module):
    """Position ids (B, N, n_axes) -> RoPE table (B, 1, N, head_dim/2, 2, 2), one piece per axis."""

    def __init__(self, dim, theta, axes_dim):
        super().__init__()
        if sum(axes_dim) != dim:
            raise ValueError(f"axes_dim {list(axes_dim)} must sum to the head dimension {dim}")
        self.dim, self.theta, self.axes_dim = dim, theta, list(axes_dim)

    def forward(self, ids):
        if ids.shape[-1] != len(self.axes_dim):
            raise ValueError(f"position ids have {ids.shape[-1]} axes, RoPE expects {len(self.axes_dim)}")
        table = torch.cat([rope(ids[..., i], d, self.theta) for i, d in enumerate(self.axes_dim)], dim=-3)
        return table.unsqueeze(1)  # a head axis, shared by all heads


def apply_rope(q, k, pe):
    """Rotate channel pairs (2j, 2j+1) of q and k (B, H, N, D) by the table pe (B, 1, N, D/2, 2, 2)."""
    def rotate(x):
        pairs = x.float().reshape(*x.shape[:-1], -1, 1, 2)
        rotated = pe[..., 0] * pairs[..., 0] + pe[..., 1] * pairs[..., 1]
        return rotated.reshape(x.shape).type_as(x)
    return rotate(q), rotate(k)


# ----------------------------------------------------------------------------- attention

class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + 1e-6) * scale over the last axis (no mean subtraction, no bias)."""

    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x_float = x.float()  # the mean of squares in low precision would round badly
        normed = x_float * torch.rsqrt(x_float.pow(2).mean(dim=-1, keepdim=True) + 1e-6)
        return normed.type_as(x) * self.scale


class QKNorm(nn.Module):
    """Separate RMSNorms for queries and keys of each head."""

    def __init__(self, head_dim):
        super().__init__()
        self.query_norm = RMSNorm(head_dim)
        self.key_norm = RMSNorm(head_dim)

    def forward(self, q, k, v):
        return self.query_norm(q).type_as(v), self.key_norm(k).type_as(v)


def attention(q, k, v, pe, mask=None):
    """Joint attention with RoPE: q, k, v (B, H, N, D) -> (B, N, H*D).

    ``mask`` is a (B, N) bool tensor, True where a token may be attended to (a real token).
    """
    q, k = apply_rope(q, k, pe)
    attn_mask = None if mask is None else mask[:, None, None, :]  # same key mask for every head and query
    if q.device.type == "cpu":
        # on a CPU, fp32 because the fused kernel is slower in bf16 at these head sizes
        # (docs/RESULTS.md, "bf16 and compile"); CUDA's bf16 kernels are the fast ones
        with torch.autocast("cpu", enabled=False):
            x = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask).type_as(v)
    else:
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def split_heads(qkv, num_heads):
    """(B, N, 3*H*D) -> q, k, v each (B, H, N, D); the channel layout is (qkv, head, dim)."""
    batch, length, _ = qkv.shape
    qkv = qkv.reshape(batch, length, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


class SelfAttention(nn.Module):
    """The per-stream projections of a double block: fused qkv, QK-norm, output proj."""

    def __init__(self, dim, num_heads, qkv_bias=False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.norm = QKNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)

    def project(self, x):
        """x (B, N, dim) -> normalised q, k and v, each (B, H, N, D)."""
        q, k, v = split_heads(self.qkv(x), self.num_heads)
        q, k = self.norm(q, k, v)
        return q, k, v


# ----------------------------------------------------------------------------- modulation

class ModulationOut(NamedTuple):
    """adaLN parameters of one sub-layer f, each (B, 1, dim): x + gate * f((1 + scale) * LN(x) + shift)."""
    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor


class Modulation(nn.Module):
    """vec (B, dim) -> a tuple of ModulationOut, one per sub-layer.

    double=True gives two, (attention, MLP), for a double-stream block; double=False gives one,
    shared by the parallel attention and MLP of a single-stream block. One Linear makes all of
    them at once; its output is cut into (shift, scale, gate) chunks in that order, the order of
    the official checkpoint's `lin` weight rows.
    """

    def __init__(self, dim, double):
        super().__init__()
        self.multiplier = 6 if double else 3
        self.lin = nn.Linear(dim, self.multiplier * dim)

    def forward(self, vec):
        # the extra axis of length 1 broadcasts each vector over every token of the sequence
        chunks = self.lin(F.silu(vec))[:, None, :].chunk(self.multiplier, dim=-1)
        return tuple(ModulationOut(*chunks[i:i + 3]) for i in range(0, self.multiplier, 3))


def modulate(x, shift, scale):
    """(1 + scale) * x + shift: the part of adaLN before the sub-layer (the gate comes after it)."""
    return (1 + scale) * x + shift


def layer_norm(dim):
    """LayerNorm without learned affine: the modulation supplies scale and shift instead."""
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def mlp(dim, mlp_ratio):
    return nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(approximate="tanh"),
                         nn.Linear(int(dim * mlp_ratio), dim))


# ----------------------------------------------------------------------------- blocks

class DoubleStreamBlock(nn.Module):
    """Music and text with their own weights, mixed only by joint attention over [txt, img]."""

    def __init__(self, hidden_size, num_heads, mlp_ratio, qkv_bias=False):
        super().__init__()
        self.img_mod = Modulation(hidden_size, double=True)
        self.img_norm1 = layer_norm(hidden_size)
        self.img_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.img_norm2 = layer_norm(hidden_size)
        self.img_mlp = mlp(hidden_size, mlp_ratio)

        self.txt_mod = Modulation(hidden_size, double=True)
        self.txt_norm1 = layer_norm(hidden_size)
        self.txt_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.txt_norm2 = layer_norm(hidden_size)
        self.txt_mlp = mlp(hidden_size, mlp_ratio)

    def joint_qkv(self, img, txt, img_mod1, txt_mod1):
        """q, k, v of the joint [txt, img] sequence, each stream projected by its own weights."""
        img_q, img_k, img_v = self.img_attn.project(
            modulate(self.img_norm1(img), img_mod1.shift, img_mod1.scale))
        txt_q, txt_k, txt_v = self.txt_attn.project(
            modulate(self.txt_norm1(txt), txt_mod1.shift, txt_mod1.scale))
        return (torch.cat([txt_q, img_q], dim=2), torch.cat([txt_k, img_k], dim=2),
                torch.cat([txt_v, img_v], dim=2))

    def forward(self, img, txt, vec, pe, mask=None):
        (img_mod1, img_mod2), (txt_mod1, txt_mod2) = self.img_mod(vec), self.txt_mod(vec)
        q, k, v = self.joint_qkv(img, txt, img_mod1, txt_mod1)
        joint = attention(q, k, v, pe, mask)
        txt_attn, img_attn = joint[:, :txt.shape[1]], joint[:, txt.shape[1]:]

        # mod1 steers the attention sub-layer (its shift and scale were used above), mod2 the MLP
        img = img + img_mod1.gate * self.img_attn.proj(img_attn)
        img = img + img_mod2.gate * self.img_mlp(modulate(self.img_norm2(img), img_mod2.shift, img_mod2.scale))
        txt = txt + txt_mod1.gate * self.txt_attn.proj(txt_attn)
        txt = txt + txt_mod2.gate * self.txt_mlp(modulate(self.txt_norm2(txt), txt_mod2.shift, txt_mod2.scale))
        return img, txt


class SingleStreamBlock(nn.Module):
    """One stream over [txt, img]: attention and MLP side by side, fused into two Linears.

    linear1: x -> [q, k, v, mlp_hidden];   linear2: [attention_out, GELU(mlp_hidden)] -> x.
    """

    def __init__(self, hidden_size, num_heads, mlp_ratio):
        super().__init__()
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.mlp_hidden_dim = int(hidden_size * mlp_ratio)
        self.linear1 = nn.Linear(hidden_size, hidden_size * 3 + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(hidden_size + self.mlp_hidden_dim, hidden_size)
        self.norm = QKNorm(hidden_size // num_heads)
        self.pre_norm = layer_norm(hidden_size)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden_size, double=False)

    def joint_qkv(self, x, mod):
        """Normalised q, k, v (B, H, N, D) and the MLP branch's hidden activations."""
        hidden = self.linear1(modulate(self.pre_norm(x), mod.shift, mod.scale))
        qkv, mlp_hidden = torch.split(hidden, [3 * self.hidden_size, self.mlp_hidden_dim], dim=-1)
        q, k, v = split_heads(qkv, self.num_heads)
        q, k = self.norm(q, k, v)
        return q, k, v, mlp_hidden

    def forward(self, x, vec, pe, mask=None):
        (mod,) = self.modulation(vec)
        q, k, v, mlp_hidden = self.joint_qkv(x, mod)
        out = self.linear2(torch.cat([attention(q, k, v, pe, mask), self.mlp_act(mlp_hidden)], dim=-1))
        return x + mod.gate * out


class LastLayer(nn.Module):
    """adaLN (shift, scale, no gate) then Linear back to patch channels."""

    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = layer_norm(hidden_size)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x, vec):
        # no gate: the output is not added to a residual stream, so there is nothing to gate
        shift, scale = self.adaLN_modulation(vec)[:, None, :].chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))
