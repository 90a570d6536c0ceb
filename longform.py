"""Songs of any length: a flow model that fills in the frames it does not know.

Every clip the flow model trains on is 2.56 s (64 latent frames). Longer music, continuing a
user's audio and regenerating a gap in it are one problem: some frames of the latent are known
(a prompt, the rest of the song), a mask m over latent frames says which (1 = known), and the
model must make the others so that the whole sounds like one piece.

Trained context (Voicebox, MusicFlow, stable-audio-tools' inpainting models). The network also
reads the known frames: beside each 2x2 patch token of z_t it gets the same patch of the clean
known latent and of the mask, through one more Linear added to the token's embedding,

    token = img_in(patch(z_t)) + known_in([patch(m * x0), patch(m)])      (model.known_tokens)

known_in starts at zero, so a model that has not learned it, or is given no known frames, is
exactly the text-to-music model (and the official checkpoints, which have no known_in, load
unchanged). Training draws a mask per example from a mix — mostly none, so text-to-music does
not suffer; a known prefix (continuation); a known outside around a generated span (infilling)
— and the loss counts only the frames to be generated:

    L = sum_frames (1 - m) ||v_theta(z_t, t, c, m * x0, m) - (eps - x0)||^2 / sum_frames (1 - m)

Training-free context (RePaint, Lugmayr et al.; the flow version of SDEdit-style inpainting).
Any text-to-music flow can be made to respect known frames without training: the straight path
says where the known frames must be at every time t, z_t = (1 - t) x0 + t eps, so before every
solver step their current values are replaced by that point (`flow.sample`'s keep), and the
network only ever sees them where it expects them. It cannot look ahead, though: the unknown
frames learn about the known ones only through the attention of a model never trained to use
them, which is what the trained context is for.

Windows. A piece longer than one window (what the model trained on) is made window by window,
left to right: each new window starts `overlap` frames before the first unknown frame, so it
sees that much of what came before as known context, and everything already known inside the
window (the rest of a song, around a gap) too:

    frames:     0 ............................................... T
    window 1:   [ generated 64                 ]
    window 2:                 [ known 32 | new 32               ]
    window 3:                               [ known 32 | new 32 ]   ...

The whole latent is decoded at once at the end (the VAE is convolutional), so a seam between
windows can only come from the flow model, never from the decoder. Where a window's new frames
begin, the music jumps more than real music does; so by default each window also remakes the last
BLEND_FRAMES frames an earlier window made and fades linearly from the old frames to its own over
them (`fill`'s blend; docs/RESULTS.md, *Long pieces*). A user's own frames are never faded. The caption may change along
the piece: each window takes the caption in force at its first new frame.

References
- Le et al., "Voicebox: Text-Guided Multilingual Universal Speech Generation at Scale", 2023,
  arXiv 2306.15687 (flow matching with a masked context, loss on the masked frames)
- Prajwal et al., "MusicFlow: Cascaded Flow Matching for Text Guided Music Generation", 2024,
  arXiv 2410.20478 (the same for music: continuation and infilling)
- Lugmayr et al., "RePaint: Inpainting using Denoising Diffusion Probabilistic Models", 2022,
  arXiv 2201.09865 (training-free inpainting by resetting the known region along the path)
- Copet et al., "Simple and Controllable Music Generation" (MusicGen), 2023, arXiv 2306.05284
  (long pieces by a sliding window that keeps the end of what it made as its prompt)
"""

from dataclasses import dataclass

import torch

from model import PATCH

METHODS = ("trained", "repaint")  # how a window learns of its known frames (see the docstring)


@dataclass(frozen=True)
class MaskMix:
    """How often a training example gets each kind of known frames; the rest get none."""
    prefix: float = 0.25  # the first k frames known: continuation
    span: float = 0.25    # everything but one span known: infilling

    def __post_init__(self):
        if min(self.prefix, self.span) < 0 or self.prefix + self.span > 1:
            raise ValueError(f"MaskMix: prefix {self.prefix} and span {self.span} must be >= 0 and sum to <= 1")

    @property
    def active(self):
        return self.prefix + self.span > 0


def draw_known_frames(n, frames, mix, generator=None):
    """(n, frames) bool: which latent frames each training example knows. Boundaries fall on
    whole patches, at least one patch is always left to generate, and a gap always has known
    music on both sides (a gap that reaches the end would be a prefix)."""
    patches = frames // PATCH
    if patches < 3:
        raise ValueError(f"known frames need clips of at least {3 * PATCH} latent frames, got {frames}")
    kind, u, v = torch.rand(3, n, generator=generator)
    prefix_end = 1 + (u * (patches - 1)).long()                 # the prefix is [0, prefix_end), 1 <= it < patches
    gap_start = 1 + (u * (patches - 2)).long()                  # the gap is [gap_start, gap_end),
    gap_end = gap_start + 1 + (v * (patches - 1 - gap_start)).long()  # 1 <= gap_start < gap_end < patches
    index = torch.arange(patches)[None]
    prefix = index < prefix_end[:, None]
    outside_span = (index < gap_start[:, None]) | (index >= gap_end[:, None])
    known = torch.where((kind < mix.prefix)[:, None], prefix,
                        torch.where((kind < mix.prefix + mix.span)[:, None], outside_span, torch.zeros_like(prefix)))
    return known.repeat_interleave(PATCH, dim=1)


def masked_flow_loss(v_pred, target, known_frames):
    """Mean squared error over the frames to be generated only; (B, C, T, F) and (B, T) bool.
    With nothing known it is exactly flow.flow_loss."""
    weight = (~known_frames)[:, None, :, None].to(v_pred.dtype)
    per_frame = ((v_pred - target) ** 2 * weight).sum()
    return per_frame / (weight.sum() * v_pred.shape[1] * v_pred.shape[3])


def keep_known(known_latent, known_frames, noise):
    """flow.sample's keep: the known frames put back on their straight path, (1 - t) x0 + t eps."""
    mask = known_frames[:, None, :, None]

    def keep(z, t):
        return torch.where(mask, (1 - t) * known_latent + t * noise, z)

    return keep


BLEND_FRAMES = 8  # latent frames (0.32 s) each window fades over by default: its seams then flux like real music's


def default_overlap(window):
    """How many already-made frames each next window sees unless told otherwise: half a window."""
    return window // 2


def windows(known_frames, window, overlap):
    """(start, first new frame) of each window `fill` samples, for a (T,) bool mask: each window
    starts `overlap` frames before the first frame still unknown (clamped to the latent), and that
    frame is where its new music begins (a seam can only be there)."""
    known, found, total = known_frames.clone(), [], len(known_frames)
    while not known.all():
        first = int((~known).nonzero()[0])
        start = max(0, min(first - overlap, total - window))
        found.append((start, first))
        known[start:start + window] = True
    return found


def window_starts(known_frames, window, overlap):
    """The start frame of each window `fill` samples (see `windows`)."""
    return [start for start, _ in windows(known_frames, window, overlap)]


def fill(sample_window, latent, known_frames, window, overlap, blend=0):
    """Make every unknown frame of `latent` (C, T, F), window by window (see the docstring).

    sample_window(latent (1, C, W, F), known (1, W) bool, start) -> (1, C, W, F) returns the
    window with its unknown frames generated and its known frames unchanged. blend: each window
    also remakes up to `blend` frames that an earlier window made just before its new ones, and
    those fade linearly from the old music to the new, so a change is spread over `blend` frames
    instead of one. Frames known from the start (a song being continued or filled in) are never
    changed."""
    if latent.shape[1] % PATCH or window % PATCH or overlap % PATCH or blend % PATCH:
        raise ValueError(f"latent length {latent.shape[1]}, window {window}, overlap {overlap} and blend {blend} "
                         f"must be multiples of {PATCH} latent frames (whole patches)")
    if not 0 <= overlap < window or not 0 <= blend <= overlap:
        raise ValueError(f"need 0 <= blend ({blend}) <= overlap ({overlap}) < window ({window})")
    latent, known = latent.clone(), known_frames.clone()
    for start, first in windows(known_frames, window, overlap):
        stop, fade = min(start + window, latent.shape[1]), 0
        while fade < min(blend, first - start) and not known_frames[first - fade - 1]:
            fade += 1  # only frames this fill made: the caller's own frames stay as given
        seen = known[start:stop].clone()
        seen[first - start - fade:first - start] = False  # remade, then faded in below
        made = sample_window(latent[None, :, start:stop], seen[None], start)[0]
        weight = (torch.arange(1, fade + 1, device=latent.device) / (fade + 1))[None, :, None]
        old = latent[:, first - fade:first].clone()
        latent[:, start:stop] = made
        latent[:, first - fade:first] = (1 - weight) * old + weight * made[:, first - start - fade:first - start]
        known[start:stop] = True
    return latent
