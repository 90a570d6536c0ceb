"""The FluxMusic transformer: predicts the flow velocity of a noisy music latent.

Input is a VAE latent z_t of shape (B, 8, T, F) (T latent frames, F = 16 frequency rows) at
flow time t. It is cut into 2x2 patches, each flattened to 8·2·2 = 32 numbers, giving a
sequence of N = (T/2)·(F/2) tokens in time-major order: token n = i·(F/2) + j is the patch
at time index i and frequency index j, and gets the position ids (0, i, j) for RoPE.
`time_id_scale` s makes the time id s·i: RoPE's fastest pair of channels turns by 1 rad per id,
so with s = 1 no channel can turn as fast as a beat of a few tokens (the tiny presets use 2.5;
docs/RESULTS.md, "The beat grid").

    tokens    = img_in(patchify(z_t))                       (B, N, H)
    text      = txt_in(c)                                    (B, L, H)   T5 features
    vec       = time_in(emb(1000 t)) + vector_in(y)          (B, H)      y: pooled CLAP
    img, text = double_blocks(img, text, vec)                separate weights per stream
    x         = single_blocks([text, img], vec)              one stream
    v         = unpatchify(final_layer(x[music part], vec))  (B, 8, T, F)

The network is trained so that v ≈ ε − x0, the velocity of the straight path
z_t = (1 − t)·x0 + t·ε (see flow.py). The building blocks and their equations are in
blocks.py; parameter names follow the official checkpoint, so the released FluxMusic weights
load with ``load_state_dict(..., strict=True)``.

With `audio_context` (ours, for songs of any length: longform.py) the model also reads frames
of the latent that are already known, a prompt or the rest of a song: tokens += known_in([2x2
patch of m * x0, 2x2 patch of m]) for the known mask m; known_in starts at zero, so without
known frames, or untrained, the model is the one above.

Three things differ from the official code: a text padding mask (padded text tokens are
never attended to), adaLN-Zero initialisation (every block starts as the identity and the
model outputs exactly zero), and the RoPE table is built once per forward and shared by all
blocks.

References:
- Fei et al., "FLUX that Plays Music", 2024, arXiv 2409.00587 (FluxMusic: the model, its
  presets and the 2x2 patching of the mel VAE latent).
- Esser et al., "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis",
  2024, arXiv 2403.03206 (SD3: rectified flow for a transformer with text and image streams,
  the design FLUX.1 and then FluxMusic build on).
- Peebles & Xie, "Scalable Diffusion Models with Transformers", 2022, arXiv 2212.09748
  (DiT: a transformer on latent patches, with adaLN-Zero initialisation).
- Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021,
  arXiv 2104.09864 (RoPE, here over three position axes).
"""

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from blocks import (TIME_EMBED_DIM, DoubleStreamBlock, EmbedND, LastLayer, MLPEmbedder,
                    SingleStreamBlock, timestep_embedding)

PATCH = 2  # the paper's 2x2 patches: latent frames and frequency rows per token


@dataclass
class FluxMusicConfig:
    in_channels: int = 32            # channels of one patch token: latent channels * 2 * 2
    vec_in_dim: int = 768            # pooled CLAP text embedding y
    context_in_dim: int = 4096       # T5 token features c
    hidden_size: int = 512
    mlp_ratio: float = 4.0
    num_heads: int = 16
    depth: int = 8                   # double-stream blocks
    depth_single_blocks: int = 16
    axes_dim: list = field(default_factory=lambda: [8, 12, 12])  # RoPE channels per id axis
    theta: int = 10000
    qkv_bias: bool = True
    time_id_scale: float = 1.0       # RoPE time id of time patch i is i * this (the paper: 1)
    audio_context: bool = False      # also read known frames of the latent (longform.py); not in the paper

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        head_dim = self.hidden_size // self.num_heads
        if sum(self.axes_dim) != head_dim:
            raise ValueError(f"axes_dim {self.axes_dim} must sum to the head dimension "
                             f"hidden_size/num_heads = {head_dim}")
        if self.in_channels % (PATCH * PATCH):
            raise ValueError(f"in_channels {self.in_channels} must be latent channels * {PATCH * PATCH}")


_OFFICIAL = dict(in_channels=32, vec_in_dim=768, context_in_dim=4096, num_heads=16, qkv_bias=True)
_TINY = dict(vec_in_dim=128, context_in_dim=128, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12],
             time_id_scale=2.5)
PRESETS = {
    # ours, for `train.py --tiny`: fed by text.py's small encoders (width 128) on 2.56 s clips;
    # time ids 2.5 a token, so the fastest RoPE pair turns as fast as an eighth note at 160 bpm
    # (docs/RESULTS.md, "The beat grid")
    "tiny": FluxMusicConfig(**_TINY, hidden_size=128, num_heads=4),
    # half and double its width at the same head size, for the model-size ablation (notebook 09)
    "tiny-narrow": FluxMusicConfig(**_TINY, hidden_size=64, num_heads=2),
    "tiny-wide": FluxMusicConfig(**_TINY, hidden_size=256, num_heads=8),
    # the paper's sizes
    "small": FluxMusicConfig(**_OFFICIAL, hidden_size=512, depth=8, depth_single_blocks=16, axes_dim=[8, 12, 12]),
    "base": FluxMusicConfig(**_OFFICIAL, hidden_size=768, depth=12, depth_single_blocks=24, axes_dim=[16, 16, 16]),
    "large": FluxMusicConfig(**_OFFICIAL, hidden_size=1024, depth=12, depth_single_blocks=24, axes_dim=[16, 24, 24]),
    "giant": FluxMusicConfig(**_OFFICIAL, hidden_size=1408, depth=16, depth_single_blocks=32, axes_dim=[16, 36, 36]),
}


# ----------------------------------------------------------------------------- patches and ids

def patchify(latent):
    """(B, C, T, F) latent -> (B, (T/2)*(F/2), C*2*2) tokens of 2x2 patches, time-major,
    channels ordered (c, dt, df)."""
    if latent.ndim != 4:
        raise ValueError(f"patchify expects a latent of shape (B, C, T, F), got {tuple(latent.shape)}")
    b, c, t, f = latent.shape
    if t % PATCH or f % PATCH:
        raise ValueError(f"latent time {t} and frequency {f} sizes must be multiples of {PATCH} "
                         f"for {PATCH}x{PATCH} patches; crop or pad the clip")
    x = latent.reshape(b, c, t // PATCH, PATCH, f // PATCH, PATCH)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (t // PATCH) * (f // PATCH), c * PATCH * PATCH)


def unpatchify(tokens, T, F):
    """Inverse of patchify: (B, (T/2)*(F/2), C*2*2) -> (B, C, T, F)."""
    b, n, d = tokens.shape
    if n != (T // PATCH) * (F // PATCH) or d % (PATCH * PATCH) or T % PATCH or F % PATCH:
        raise ValueError(f"cannot unpatchify {tuple(tokens.shape)} tokens into a latent with T={T}, F={F}")
    c = d // (PATCH * PATCH)
    x = tokens.reshape(b, T // PATCH, F // PATCH, c, PATCH, PATCH)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, T, F)


def known_tokens(known_latent, known_frames):
    """(B, C, T, F) clean latent and (B, T) bool "this frame is known" -> (B, N, 4C + 4) tokens: each
    2x2 patch of the latent where known (zeros elsewhere) beside the same patch of the mask."""
    mask = known_frames[:, None, :, None].to(known_latent.dtype).expand(-1, 1, -1, known_latent.shape[-1])
    return torch.cat([patchify(known_latent * mask), patchify(mask)], dim=-1)


def make_img_ids(batch, T, F, device=None, time_scale=1.0):
    """Position ids (B, (T/2)*(F/2), 3) = (0, time-patch index * time_scale, freq-patch index), time-major."""
    time_index, freq_index = torch.meshgrid(torch.arange(T // PATCH, device=device, dtype=torch.float32) * time_scale,
                                            torch.arange(F // PATCH, device=device, dtype=torch.float32),
                                            indexing="ij")
    ids = torch.stack([torch.zeros_like(time_index), time_index, freq_index], dim=-1).reshape(1, -1, 3)
    return ids.expand(batch, -1, -1)


def make_txt_ids(batch, L, device=None):
    """Text tokens all sit at position (0, 0, 0): order comes from T5, not from RoPE."""
    return torch.zeros(batch, L, 3, device=device)


# ----------------------------------------------------------------------------- the model

class FluxMusic(nn.Module):
    """Velocity network v_θ(z_t, t, y, c): noisy music tokens in, one velocity per token out.

    Inputs, in forward's order (B batch, N music tokens, L text tokens, H = hidden_size):
      x         (B, N, in_channels=32)   2x2 patches of the noisy latent z_t (see ``patchify``)
      img_ids   (B, N, 3)                RoPE ids (0, time patch, freq patch) (``make_img_ids``)
      txt       (B, L, context_in_dim)   T5 token features c: the caption word by word
      txt_ids   (B, L, 3)                all zeros (``make_txt_ids``)
      t         (B,)                     flow time in [0, 1]; 1 is pure noise
      y         (B, vec_in_dim)          pooled CLAP embedding: the whole caption as one vector
      txt_mask  (B, L) bool or None      True for real text tokens; padding is never attended to
    Output: (B, N, 32), the velocity of every patch token. ``velocity`` wraps all this for a
    latent (B, 8, T, F): it patchifies, makes the ids, calls forward and unpatchifies.

    Conditioning enters by two routes. t and y become one vector per sample, vec (B, H),
    which modulates every block (adaLN); the text tokens c join the music tokens in
    attention, so each music token can look at the words it needs.

    `img_in` and `txt_in` lift music and text tokens to width H: img (B, N, H), txt (B, L, H).
    Then `depth` double-stream blocks keep them in separate streams, each with its own
    weights, meeting only in joint attention over [txt, img] (B, L + N, H); then the
    two streams are concatenated and `depth_single_blocks` single-stream blocks, cheaper
    (one fused Linear in, one out), treat them as one sequence. The final layer reads only
    the N music tokens and maps H back to 32 patch channels.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.pe_embedder = EmbedND(h // config.num_heads, config.theta, config.axes_dim)
        self.img_in = nn.Linear(config.in_channels, h)
        self.time_in = MLPEmbedder(TIME_EMBED_DIM, h)
        self.vector_in = MLPEmbedder(config.vec_in_dim, h)
        self.txt_in = nn.Linear(config.context_in_dim, h)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(h, config.num_heads, config.mlp_ratio, config.qkv_bias) for _ in range(config.depth))
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(h, config.num_heads, config.mlp_ratio) for _ in range(config.depth_single_blocks))
        self.final_layer = LastLayer(h, 1, config.in_channels)  # patch 1: a token already holds its patch
        if config.audio_context:  # a patch of the known latent and a patch of the mask saying where it is known;
            # no bias, so "nothing known" (all zeros) adds exactly nothing: text-to-music needs no known input
            self.known_in = nn.Linear(config.in_channels + PATCH * PATCH, h, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier-uniform Linears with zero bias, small normal embedders, then adaLN-Zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embedder in (self.time_in, self.vector_in):
            nn.init.normal_(embedder.in_layer.weight, std=0.02)
            nn.init.normal_(embedder.out_layer.weight, std=0.02)
        # zero (shift, scale, gate) -> every block is the identity; zero final Linear -> output 0
        zero = [block.img_mod.lin for block in self.double_blocks] + \
               [block.txt_mod.lin for block in self.double_blocks] + \
               [block.modulation.lin for block in self.single_blocks] + \
               [self.final_layer.adaLN_modulation[1], self.final_layer.linear]
        if self.config.audio_context:  # zero: with or without known frames, the model starts as without
            nn.init.zeros_(self.known_in.weight)
        for linear in zero:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def check_inputs(self, x, img_ids, txt, txt_ids, t, y, txt_mask, known):
        c, (b, n) = self.config, x.shape[:2]
        expect = {
            "x": (x, (b, n, c.in_channels)), "img_ids": (img_ids, (b, n, 3)),
            "txt": (txt, (b, txt.shape[1], c.context_in_dim)), "txt_ids": (txt_ids, (b, txt.shape[1], 3)),
            "t": (t, (b,)), "y": (y, (b, c.vec_in_dim)),
        }
        if txt_mask is not None:
            expect["txt_mask"] = (txt_mask, (b, txt.shape[1]))
        if known is not None:
            if not c.audio_context:
                raise ValueError("this FluxMusic was built without audio_context, so it cannot read known frames; "
                                 "sample it with the training-free method (longform.py, method 'repaint')")
            expect["known"] = (known, (b, n, c.in_channels + PATCH * PATCH))
        for name, (tensor, shape) in expect.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(f"FluxMusic input {name} has shape {tuple(tensor.shape)}, expected {shape}")
        if txt_mask is not None and txt_mask.dtype != torch.bool:
            raise ValueError(f"txt_mask must be a bool tensor (True = real token), got {txt_mask.dtype}")

    def forward(self, x, img_ids, txt, txt_ids, t, y, txt_mask=None, known=None):
        """Patch tokens x (B, N, 32) at flow time t (B,) -> velocity on the same tokens (B, N, 32).

        txt (B, L, context_in_dim) T5 features, y (B, vec_in_dim) pooled CLAP embedding,
        txt_mask (B, L) bool, True for real text tokens (None: every token is real),
        known (B, N, 32 + 4): `known_tokens` of the frames already known (None: none are).
        """
        if x.ndim != 3:
            raise ValueError(f"FluxMusic expects patch tokens (B, N, {self.config.in_channels}), "
                             f"got {tuple(x.shape)}; use FluxMusic.velocity for a (B, C, T, F) latent")
        self.check_inputs(x, img_ids, txt, txt_ids, t, y, txt_mask, known)
        img = self.img_in(x)
        if known is not None:
            img = img + self.known_in(known.to(img.dtype))
        txt = self.txt_in(txt)
        vec = self.time_in(timestep_embedding(t).to(img.dtype)) + self.vector_in(y)
        pe = self.pe_embedder(torch.cat([txt_ids, img_ids], dim=1))  # once, shared by every block
        mask = None
        if txt_mask is not None:  # music tokens are always real keys
            mask = torch.cat([txt_mask, txt_mask.new_ones(x.shape[:2])], dim=1)

        for block in self.double_blocks:
            img, txt = block(img, txt, vec, pe, mask)
        joint = torch.cat([txt, img], dim=1)
        for block in self.single_blocks:
            joint = block(joint, vec, pe, mask)
        return self.final_layer(joint[:, txt.shape[1]:], vec)

    def velocity(self, latent, t, txt, txt_mask, y, forward=None, known_latent=None, known_frames=None):
        """Latent (B, C, T, F) at time t (B,) or scalar -> velocity (B, C, T, F).

        The entry point for training and sampling: patchify, build the position ids, run
        forward, unpatchify. `forward` is this model's forward by default; training passes the
        model wrapped by DistributedDataParallel or torch.compile, which must see the call.
        known_latent (B, C, T, F) and known_frames (B, T) bool, together: the clean latent of the
        frames already known (a prompt, the rest of a song), for a model built with audio_context.
        """
        if latent.ndim != 4 or latent.shape[1] * PATCH * PATCH != self.config.in_channels:
            raise ValueError(f"expected a latent (B, {self.config.in_channels // (PATCH * PATCH)}, T, F), "
                             f"got {tuple(latent.shape)}")
        b, _, T, F = latent.shape
        t = torch.as_tensor(t, dtype=torch.float32, device=latent.device)
        t = t.expand(b) if t.ndim == 0 else t
        img_ids = make_img_ids(b, T, F, latent.device, self.config.time_id_scale)
        known = None if known_frames is None else known_tokens(known_latent, known_frames)
        out = (forward or self)(patchify(latent), img_ids, txt, make_txt_ids(b, txt.shape[1], latent.device), t, y,
                                txt_mask, known)
        return unpatchify(out, T, F)
