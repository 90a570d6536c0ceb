"""Text conditioning from scratch: a byte tokenizer, a T5-style encoder and a CLAP-style encoder.

FluxMusic reads every caption twice. A T5 encoder turns it into one feature vector per token,
c (B, L, d), which joins the music tokens inside the transformer's attention, so the model can
look up individual words. A CLAP text tower squeezes it into one vector y (B, D) that is added
to the timestep embedding and steers every block. The paper takes both pretrained (T5-XXL,
CLAP-L); here both are small and pretrained by `train.py` on the dataset's captions and audio.

1. Tokens. A caption is first normalised (lower case, single spaces), since "FAST ORGAN"
   and "fast  organ" mean what "fast organ" means but share none of its bytes (the training
   captions are templates, users type anything). Text is then cut into UTF-8 bytes, so
   every string has a spelling and nothing is out of vocabulary (as in ByT5). Ids 0 and 1
   are <pad> and <eos>, the next 16 are sentinels
   for span corruption, then byte b has id 18 + b. A caption becomes its bytes plus <eos>;
   "" becomes just <eos>, the well-defined "no caption" prompt of classifier-free guidance.

2. The T5 (v1.1) encoder is a stack of pre-norm residual layers with no biases anywhere:

       h = x + Attn(RMSNorm(x)),    x' = h + W_o (GELU(W_0 RMSNorm(h)) * W_1 RMSNorm(h))

   where RMSNorm(x) = g * x / sqrt(mean(x^2) + eps) and the feed-forward is gated by a second
   projection (gated GELU). There are no position embeddings. Instead each attention head adds
   a learned scalar b[bucket(j - i)] to the score of query i and key j, so attention depends
   on how far apart two tokens are, not where they sit. Offsets are binned into buckets: with
   32 buckets, 16 for keys before the query and 16 for keys after it; in each half, distances
   0..7 get a bucket each, and distances 8..max_distance share the other 8 on a log scale:

       bucket(n) = n                                               if n < 8
                 = min(15, 8 + floor(8 * log(n / 8) / log(max_distance / 8)))   otherwise.

   Nearby offsets are told apart exactly; far ones only roughly, which is what language
   needs. One bias table is computed once and reused by every layer. A final RMSNorm makes
   the features c about unit size, and padded positions are zeroed, so they carry nothing.

3. T5 pretraining is span corruption. Drop ~15% of a caption's bytes in spans of mean length 3,
   replace each span with one sentinel, and ask a small decoder to write the spans back:

       input   "A slow<X0> piano piece<X1>out drums."      target  "<X0>, sad<X1> with"

   We use a decoder, not a prediction head on the encoder. A head needs one input slot per
   masked byte, which shows the model how long each span is, and it scores only those slots.
   With a decoder, the encoder must store everything about the caption in its features,
   because the decoder can reach the caption only through cross-attention to those features.
   That is what the flow model needs from c. As in ByT5, the decoder is shallower than the
   encoder, so most of the learning happens in the encoder. The decoder only writes ~15% of
   the length, so it is cheap, and it is thrown away after pretraining.

4. CLAP learns a shared space for captions and audio. A text tower (a small T5 encoder,
   mean-pooled) and an audio tower (a conv net over the log-mel, pooled over time and
   frequency) each project to D dims, L2-normalised: t_i, a_i. For a batch of N pairs, the
   symmetric InfoNCE loss with a learned temperature s = exp(logit_scale) is

       S = s * T A^T,   loss = (CE(S, I) + CE(S^T, I)) / 2,   CE(S, I) = -1/N sum_i log softmax(S_i)_i

   Each caption must pick out its own clip among the N clips, and each clip its own caption.
   If the embeddings carry no information (S constant), the loss is log N. If t_i = a_i are
   orthogonal and s is large, the loss goes to 0. Because similar captions must land near
   similar sounds, y learns what the audio tower can hear: instrument and drums easily, tempo
   fairly well, and mode only because the dataset plays every clip in C. Below 1 kHz the mel
   bands are ~46 Hz apart, wider than the ~19 Hz between a minor and a major third above middle
   C, so a third is told by which bands its harmonics fill, and with random keys those bands
   differ from clip to clip (zero-shot mode 0.5-0.66 then, 0.98 in one key). The same
   space gives zero-shot classification (which prompt is nearest a clip?) and retrieval (which
   clip is nearest a caption?), which `evaluate.py` reuses.

Training recipes (what `train.py`'s clap and t5 stages run each step): `clap_training_batch`
then `CLAP.loss`; `t5_training_batch` then `t5_pretrain_loss`.

References
- Raffel et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
  Transformer" (T5, span corruption, relative position buckets), arXiv 1910.10683
- Xue et al., "ByT5: Towards a Token-Free Future with Pre-trained Byte-to-Byte Models", arXiv 2105.13626
- Shazeer, "GLU Variants Improve Transformer" (gated GELU), arXiv 2002.05202
- Elizalde et al., "CLAP: Learning Audio Concepts From Natural Language Supervision", arXiv 2206.04769;
  Wu et al., "Large-scale Contrastive Language-Audio Pretraining" (LAION-CLAP), arXiv 2211.06687
- van den Oord et al., "Representation Learning with Contrastive Predictive Coding" (InfoNCE),
  arXiv 1807.03748; Radford et al., "Learning Transferable Visual Models From Natural Language
  Supervision" (CLIP: symmetric loss, learned temperature), arXiv 2103.00020
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from blocks import RMSNorm
from audio import normalise_log_mel

# ----------------------------------------------------------------------------- tokenizer

PAD, EOS = 0, 1
NUM_SENTINELS = 16
BYTE_OFFSET = 2 + NUM_SENTINELS
VOCAB_SIZE = BYTE_OFFSET + 256


def sentinel(k):
    """Id of the k-th sentinel <Xk>, the stand-in for the k-th corrupted span."""
    return 2 + k


def pad_batch(rows, length=None):
    """Lists of ids -> (ids (B, L) long, mask (B, L) bool), right-padded with PAD to the longest row."""
    length = length or max(len(row) for row in rows)
    ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = True
    return ids, mask


def normalise_caption(caption):
    """Lower case, words separated by single spaces, no spaces at the ends."""
    return " ".join(caption.lower().split())


class ByteTokenizer:
    """normalise_caption, then UTF-8 bytes + <eos>; captions longer than max_length bytes are
    cut, keeping the <eos>."""

    def __init__(self, max_length=128):
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1 (room for <eos>), got {max_length}")
        self.max_length = max_length

    def __call__(self, captions, pad_to_max=False):
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions) or not captions:
            raise TypeError("ByteTokenizer expects a non-empty list of strings, e.g. tokenizer(['a piano piece'])")
        rows = [[b + BYTE_OFFSET for b in normalise_caption(c).encode("utf-8")[:self.max_length - 1]] + [EOS]
                for c in captions]
        return pad_batch(rows, self.max_length if pad_to_max else None)

    def decode(self, ids):
        """1-D ids -> str, up to the first <eos>; sentinels print as <Xk>, pads are skipped."""
        pieces, raw = [], bytearray()
        for i in torch.as_tensor(ids).tolist():
            if i == EOS:
                break
            if i >= BYTE_OFFSET:
                raw.append(i - BYTE_OFFSET)
            elif i != PAD:
                pieces += [raw.decode("utf-8", errors="replace"), f"<X{i - 2}>"]
                raw = bytearray()
        # a cut in the middle of a multi-byte character decodes as U+FFFD, not an exception
        return "".join(pieces) + raw.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------- T5 encoder

@dataclass
class T5Config:
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    d_ff: int = 320
    num_buckets: int = 32
    max_distance: int = 128
    max_length: int = 128
    # pretraining decoder only. With 1 layer it learned slower, and the encoder's features drifted
    # towards one shared direction (mean cosine between tokens 0.7 vs 0.05 with 2 layers)
    decoder_layers: int = 2


def relative_position_bucket(relative_position, num_buckets=32, max_distance=128, bidirectional=True):
    """Key-minus-query offsets (any shape, long) -> bucket ids in [0, num_buckets)."""
    if bidirectional:
        num_buckets //= 2
        offset = (relative_position > 0).long() * num_buckets  # keys after the query: upper half
        distance = relative_position.abs()
    else:
        offset = 0
        distance = (-relative_position).clamp(min=0)  # a causal decoder only ever looks back
    exact = num_buckets // 2
    log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return offset + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """One learned scalar per (bucket, head), added to the attention scores."""

    def __init__(self, config, bidirectional):
        super().__init__()
        self.config, self.bidirectional = config, bidirectional
        self.table = nn.Embedding(config.num_buckets, config.num_heads)

    def forward(self, length):
        position = torch.arange(length, device=self.table.weight.device)
        buckets = relative_position_bucket(position[None, :] - position[:, None], self.config.num_buckets,
                                           self.config.max_distance, self.bidirectional)
        return self.table(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, heads, L, L)


def padding_bias(mask):
    """(B, L) bool -> (B, 1, 1, L) additive bias: -inf on padded keys, so no query attends to them."""
    return torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, float("-inf"))[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention without biases; `bias` holds positions and masks.
    T5 leaves out the 1/sqrt(d_head) and folds it into its init; we keep the usual scaling."""

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.query, self.key, self.value, self.out = (nn.Linear(d_model, d_model, bias=False) for _ in range(4))

    def forward(self, x, context, bias):
        B, L, D = x.shape
        heads = lambda t: t.view(B, -1, self.num_heads, D // self.num_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(context)),
                                           heads(self.value(context)), attn_mask=bias)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class GatedGELU(nn.Module):
    """T5 v1.1 feed-forward: down(GELU(gate(x)) * up(x))."""

    def __init__(self, d_model, d_ff):
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=False)
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.gate(x), approximate="tanh") * self.up(x))


class Block(nn.Module):
    """Pre-norm residual layer: self-attention, cross-attention (decoder only), feed-forward."""

    def __init__(self, config, cross_attention=False):
        super().__init__()
        d = config.d_model
        self.self_norm, self.self_attn = RMSNorm(d), Attention(d, config.num_heads)
        self.cross_norm = RMSNorm(d) if cross_attention else None
        self.cross_attn = Attention(d, config.num_heads) if cross_attention else None
        self.ff_norm, self.ff = RMSNorm(d), GatedGELU(d, config.d_ff)

    def forward(self, x, bias, memory=None, memory_bias=None):
        h = self.self_norm(x)
        x = x + self.self_attn(h, h, bias)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_norm(x), memory, memory_bias)
        return x + self.ff(self.ff_norm(x))


class T5Encoder(nn.Module):
    """ids (B, L), mask (B, L) -> features (B, L, d_model), zero at padded positions."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tokenizer = ByteTokenizer(config.max_length)
        self.embed = nn.Embedding(VOCAB_SIZE, config.d_model)
        self.position_bias = RelativePositionBias(config, bidirectional=True)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = RMSNorm(config.d_model)

    def forward(self, ids, mask):
        x = self.embed(ids)
        bias = self.position_bias(ids.shape[1]) + padding_bias(mask)  # computed once, shared by all layers
        for block in self.blocks:
            x = block(x, bias)
        # zeroed pads: a consumer that ignores the mask still reads nothing from them
        return self.final_norm(x) * mask[..., None]

    def encode(self, captions):
        """list of str -> (features (B, L, d), mask (B, L)) on the encoder's device."""
        ids, mask = self.tokenizer(captions)
        device = self.embed.weight.device
        mask = mask.to(device)
        return self(ids.to(device), mask), mask


class T5Decoder(nn.Module):
    """The pretraining decoder: causal self-attention, cross-attention to the encoder, byte logits."""

    def __init__(self, config):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, config.d_model)
        self.position_bias = RelativePositionBias(config, bidirectional=False)
        self.blocks = nn.ModuleList(Block(config, cross_attention=True) for _ in range(config.decoder_layers))
        self.final_norm = RMSNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, VOCAB_SIZE, bias=False)

    def forward(self, ids, memory, memory_mask):
        length = ids.shape[1]
        causal = torch.full((length, length), float("-inf"), device=ids.device).triu(1)
        bias, memory_bias = self.position_bias(length) + causal, padding_bias(memory_mask)
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, bias, memory, memory_bias)
        return self.lm_head(self.final_norm(x))


def random_lengths(total, parts, generator):
    """Split `total` items into `parts` non-empty runs at random cut points; returns run lengths."""
    cuts = (torch.randperm(total - 1, generator=generator)[:parts - 1] + 1).sort().values.tolist()
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def span_corrupt(ids, mask, generator=None, noise_density=0.15, mean_span_length=3.0):
    """T5 span corruption of a tokenized batch.

    Returns (inputs, input_mask, targets, target_mask): inputs keep the caption with each dropped
    span replaced by a sentinel <X0>, <X1>, ... in order; targets list "<Xk> span_k" for every
    span, then <eos>. Captions of fewer than 2 bytes are left whole, with target "<eos>".
    """
    inputs, targets = [], []
    for row, row_mask in zip(ids, mask):
        tokens = row[row_mask].tolist()[:-1]  # the bytes, without their <eos>
        n = len(tokens)
        noise = [False] * n
        if n >= 2:
            num_noise = min(max(round(n * noise_density), 1), n - 1)
            num_spans = max(1, min(round(num_noise / mean_span_length), n - num_noise, NUM_SENTINELS))
            keeps = random_lengths(n - num_noise, num_spans, generator)
            drops = random_lengths(num_noise, num_spans, generator)
            # kept runs alternate with spans; a coin picks which comes first, so neither end is always kept
            noise_first = bool(torch.rand(1, generator=generator) < 0.5)
            noise = []
            for keep, drop in zip(keeps, drops):
                run = [False] * keep + [True] * drop
                noise += run[::-1] if noise_first else run
        corrupted, target = corrupt_spans(tokens, noise)
        inputs.append(corrupted)
        targets.append(target)
    return (*pad_batch(inputs), *pad_batch(targets))


def corrupt_spans(tokens, noise):
    """One caption's bytes and a bool per byte (True: dropped) -> (input, target) token lists: each
    run of dropped bytes becomes one sentinel <Xk> in the input, and the target lists "<Xk> the run"
    for every run in order; both end with <eos>."""
    corrupted, target, spans = [], [], 0
    for t, token in enumerate(tokens):
        if not noise[t]:
            corrupted.append(token)
            continue
        if t == 0 or not noise[t - 1]:  # a new span starts: one sentinel stands for all of it
            corrupted.append(sentinel(spans))
            target.append(sentinel(spans))
            spans += 1
        target.append(token)
    return corrupted + [EOS], target + [EOS]


def t5_training_batch(tokenizer, captions, batch_size, generator=None):
    """One step's batch for the T5 stage of train.py: random captions, tokenized and span-corrupted
    (inputs, input_mask, targets, target_mask), all drawn from `generator`."""
    chosen = torch.randint(len(captions), (batch_size,), generator=generator).tolist()
    return span_corrupt(*tokenizer([captions[i] for i in chosen]), generator=generator)


def t5_pretrain_loss(encoder, decoder, inputs, input_mask, targets, target_mask):
    """Span-corruption cross-entropy of a `span_corrupt` batch (mean over target bytes and sentinels)."""
    memory = encoder(inputs, input_mask)
    # teacher forcing: the decoder reads the targets shifted right by one, starting from <pad>
    logits = decoder(F.pad(targets[:, :-1], (1, 0), value=PAD), memory, input_mask)
    return F.cross_entropy(logits[target_mask], targets[target_mask])


# ----------------------------------------------------------------------------- CLAP

@dataclass
class CLAPConfig:
    embed_dim: int = 128      # the shared space; y has this size
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    max_length: int = 128
    audio_width: int = 16     # channels of the first conv; doubled each block up to 4x
    audio_blocks: int = 4     # each halves time and frequency
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0


class AudioEncoder(nn.Module):
    """log-mel (B, T, 64) -> (B, out_dim): strided 3x3 convs, then mean- and max-pooling."""

    def __init__(self, width, blocks, out_dim):
        super().__init__()
        layers, channels = [], 1
        for i in range(blocks):
            out = width * 2 ** min(i, 2)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(1, out), nn.GELU()]
            channels = out
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * channels, out_dim)

    def forward(self, mel):
        x = self.convs(normalise_log_mel(mel).unsqueeze(1))  # O(1) values for the first conv
        # mean: how much of a sound there is (texture, note density); max: whether it happens at all
        return self.proj(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))


class CLAP(nn.Module):
    """Text and audio towers that meet in one L2-normalised embed_dim space."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tokenizer = ByteTokenizer(config.max_length)
        self.text_encoder = T5Encoder(T5Config(d_model=config.text_width, num_layers=config.text_layers,
                                               num_heads=config.text_heads, d_ff=5 * config.text_width // 2,
                                               max_length=config.max_length))
        self.text_proj = nn.Linear(config.text_width, config.embed_dim, bias=False)
        self.audio_encoder = AudioEncoder(config.audio_width, config.audio_blocks, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)))

    def embed_text(self, captions):
        """list of str, or (ids, mask) from a ByteTokenizer -> (B, embed_dim), unit length."""
        ids, mask = captions if isinstance(captions, tuple) else self.tokenizer(captions)
        device = self.logit_scale.device
        ids, mask = ids.to(device), mask.to(device)
        features = self.text_encoder(ids, mask)  # zero at pads, so the sum counts real tokens only
        pooled = features.sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(self.text_proj(pooled), dim=-1)

    def embed_audio(self, mel):
        """log-mel (B, T, 64) from audio.MelSpectrogram -> (B, embed_dim), unit length."""
        return F.normalize(self.audio_encoder(mel.to(self.logit_scale.device)), dim=-1)

    def scale(self):
        """exp(logit_scale), clamped so the softmax cannot become arbitrarily sharp."""
        return self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    def loss(self, captions, mel):
        """The training objective on matching (caption, log-mel) pairs: symmetric InfoNCE."""
        return info_nce(self.embed_text(captions), self.embed_audio(mel), self.scale())


def clap_training_batch(captions, mels, batch_size, generator=None, clip_of=None):
    """One step's batch for the CLAP stage of train.py: `batch_size` random (caption, log-mel)
    pairs, caption j describing mels[clip_of[j]] (default: mels[j]; a clip may have several
    captions). Every other pair in the batch is a negative for InfoNCE, so bigger batches teach more."""
    chosen = torch.randint(len(captions), (batch_size,), generator=generator)
    clips = chosen if clip_of is None else clip_of[chosen]
    return [captions[i] for i in chosen.tolist()], mels[clips]


def info_nce(text_emb, audio_emb, logit_scale):
    """Symmetric InfoNCE; row i of each is a matching pair; logit_scale multiplies the cosines."""
    logits = logit_scale * text_emb @ audio_emb.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def retrieval_metrics(text_emb, audio_emb, ks=(1, 5)):
    """Text -> audio retrieval: R@k = share of captions whose own clip ranks in the top k."""
    similarity = text_emb @ audio_emb.T
    own = similarity.diagonal()[:, None]
    rank = (similarity > own).sum(dim=1)  # how many clips beat the right one
    return {f"R@{k}": (rank < k).float().mean().item() for k in ks}


# Prompts per attribute value, in the dataset's caption vocabulary (see music.py). Averaging a few
# phrasings ("prompt ensembling") makes the class vector less sensitive to one wording.
ATTRIBUTE_PROMPTS = {
    "instrument": {name: [f"a {name} piece", f"music played on {name}", f"a song with {name}"]
                   for name in ("piano", "guitar", "organ", "strings", "flute", "bells")},
    "tempo": {"slow": ["a slow piece", "a relaxed, leisurely tune"],
              "moderate": ["a moderate piece", "a mid-tempo tune at a walking pace"],
              "fast": ["a fast piece", "an upbeat, lively tune"]},
    "mode": {"major": ["a happy piece in a major key", "a bright, cheerful tune"],
             "minor": ["a sad piece in a minor key", "a dark, melancholic tune"]},
    "drums": {True: ["music with drums", "a tune with a steady beat and percussion"],
              False: ["music without drums", "a tune with no percussion"]},
}


@torch.no_grad()
def zero_shot_classify(clap, audio_emb, class_prompts):
    """Nearest class for each clip: {class: [prompts]} -> list of class names, one per row of audio_emb."""
    names = list(class_prompts)
    classes = torch.stack([F.normalize(clap.embed_text(list(prompts)).mean(0), dim=-1)
                           for prompts in class_prompts.values()])
    return [names[i] for i in (audio_emb @ classes.T).argmax(dim=1).tolist()]


def zero_shot_accuracy(clap, audio_emb, attributes, prompts=ATTRIBUTE_PROMPTS):
    """{attribute: share of clips classified right}; `attributes` is one dataset attribute dict per clip."""
    return {name: sum(p == a[name] for p, a in zip(zero_shot_classify(clap, audio_emb, classes), attributes))
            / len(attributes) for name, classes in prompts.items()}


@torch.no_grad()
def clap_metrics(clap, captions, mels, attributes, chunk=64):
    """Held-out report: text->audio R@1/R@5 with their chance levels, and zero-shot accuracy per
    attribute when the clips have known attributes (the built-in dataset; not your own folder)."""
    text_emb = torch.cat([clap.embed_text(captions[i:i + chunk]) for i in range(0, len(captions), chunk)])
    audio_emb = torch.cat([clap.embed_audio(m) for m in mels.split(chunk)])
    metrics = retrieval_metrics(text_emb, audio_emb)
    metrics.update({f"chance_R@{k}": min(k / len(captions), 1.0) for k in (1, 5)})
    if all(a is not None for a in attributes):
        metrics.update({f"zero_shot_{name}": acc
                        for name, acc in zero_shot_accuracy(clap, audio_emb, attributes).items()})
    return metrics
