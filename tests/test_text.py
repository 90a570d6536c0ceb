"""Tests for text.py: tokenizer, relative position buckets, T5 encoder/decoder, span corruption, CLAP."""
import math

import pytest
import torch

import text
from conftest import train_stage
from text import (BYTE_OFFSET, CLAP, EOS, PAD, ByteTokenizer, CLAPConfig, T5Config, T5Decoder, T5Encoder,
                  info_nce, relative_position_bucket, retrieval_metrics, sentinel, span_corrupt)
from train import StageSize

pytestmark = pytest.mark.usefixtures("one_thread")  # these models are tiny: a second thread mostly waits

TINY_T5 = T5Config(d_model=32, num_layers=2, num_heads=2, d_ff=64, max_length=64)
CAPTIONS = ["A slow, melancholic piano piece in a minor key, without drums.",
            "An upbeat guitar tune with a steady beat.", "", "café ♪", "x"]


# ----------------------------------------------------------------------------- tokenizer

@pytest.mark.parametrize("caption", ["a piano piece", "", "café ♪", "日本語の歌 🎵", "tab and newline"])
def test_tokenizer_round_trip(caption):
    tokenizer = ByteTokenizer()
    ids, mask = tokenizer([caption])
    assert ids.shape == mask.shape == (1, len(caption.encode("utf-8")) + 1)
    assert ids[0, -1] == EOS and mask.all()
    assert tokenizer.decode(ids[0]) == caption


def test_tokenizer_normalises_case_and_spacing():
    tokenizer = ByteTokenizer()
    ids, mask = tokenizer(["  FAST Happy\tOrgan\n with  DRUMS ", "fast happy organ with drums", "CAFÉ"])
    assert torch.equal(ids[0], ids[1]) and torch.equal(mask[0], mask[1])
    assert tokenizer.decode(ids[2]) == "café"


def test_tokenizer_reserved_ids_and_padding():
    ids, mask = ByteTokenizer()(["\x00\xff", ""])  # "\xff" (ÿ) is 2 UTF-8 bytes
    assert ids[0].tolist() == [BYTE_OFFSET, BYTE_OFFSET + 0xC3, BYTE_OFFSET + 0xBF, EOS]
    assert ids[1].tolist() == [EOS, PAD, PAD, PAD] and mask[1].tolist() == [True, False, False, False]
    assert sentinel(0) == 2 and sentinel(text.NUM_SENTINELS - 1) == BYTE_OFFSET - 1


def test_tokenizer_truncates_keeping_eos():
    tokenizer = ByteTokenizer(max_length=16)
    ids, mask = tokenizer(["a" * 1000, "short"])
    assert ids.shape == (2, 16) and mask[0].all()
    assert ids[0, -1] == EOS and tokenizer.decode(ids[0]) == "a" * 15
    ids, _ = tokenizer(["é" * 20])  # 15 bytes cut a 2-byte character in half: decodes, with U+FFFD at the cut
    assert tokenizer.decode(ids[0]) == "é" * 7 + "\ufffd"


def test_tokenizer_pad_to_max_and_bad_input():
    tokenizer = ByteTokenizer(max_length=24)
    ids, mask = tokenizer(["hi", ""], pad_to_max=True)
    assert ids.shape == (2, 24) and mask.sum(1).tolist() == [3, 1]
    for bad in ["a bare string", [], ["ok", 3]]:
        with pytest.raises(TypeError):
            tokenizer(bad)
    with pytest.raises(ValueError):
        ByteTokenizer(max_length=0)


# ----------------------------------------------------------------------------- relative position buckets

def test_buckets_sign_exact_and_capped():
    distance = torch.arange(0, 8)
    before, after = relative_position_bucket(-distance), relative_position_bucket(distance)
    assert before.tolist() == list(range(8))              # keys before the query: exact, lower half
    assert after[1:].tolist() == list(range(17, 24))      # keys after it: exact, upper half
    assert not set(before[1:].tolist()) & set(after[1:].tolist())
    far = relative_position_bucket(torch.tensor([-128, -1000, 128, 1000]))
    assert far.tolist() == [15, 15, 31, 31]


def test_buckets_monotonic_and_log_spaced():
    distance = torch.arange(0, 300)
    buckets = relative_position_bucket(-distance)
    assert (buckets.diff() >= 0).all()
    # 8 + floor(8 log(n/8) / log(16)): each doubling of the distance moves two buckets on
    assert relative_position_bucket(-torch.tensor([8, 16, 32, 64, 127])).tolist() == [8, 10, 12, 14, 15]
    widths = torch.bincount(buckets[:128])
    assert (widths[:8] == 1).all() and (widths[8:].diff() >= 0).all()  # buckets widen with distance


def test_unidirectional_buckets_ignore_the_future():
    rel = torch.arange(-10, 11)
    buckets = relative_position_bucket(rel, bidirectional=False)
    assert (buckets[rel >= 0] == 0).all()
    assert buckets[rel < 0].tolist() == relative_position_bucket(rel[rel < 0], num_buckets=64).tolist()


# ----------------------------------------------------------------------------- T5 encoder and decoder

def test_padding_leaves_real_token_features_unchanged():
    torch.manual_seed(0)
    encoder = T5Encoder(TINY_T5).eval()
    ids, mask = encoder.tokenizer(CAPTIONS)
    padded_ids, padded_mask = encoder.tokenizer(CAPTIONS, pad_to_max=True)
    with torch.no_grad():
        short, long = encoder(ids, mask), encoder(padded_ids, padded_mask)
    assert short.shape == (5, ids.shape[1], 32) and long.shape == (5, 64, 32)
    assert torch.allclose(short[mask], long[padded_mask], atol=1e-5)
    assert (long[~padded_mask] == 0).all()
    one, _ = encoder.encode([CAPTIONS[1]])  # alone: no padding at all
    assert torch.allclose(one[0], short[1, :one.shape[1]], atol=1e-5)


def test_empty_caption_has_finite_features():
    torch.manual_seed(0)
    features, mask = T5Encoder(TINY_T5).encode([""])
    assert features.shape == (1, 1, 32) and mask.tolist() == [[True]]
    assert torch.isfinite(features).all() and features.abs().sum() > 0


def test_encoder_is_permutation_sensitive():
    """No absolute positions, but relative ones: swapping two words must change the features."""
    torch.manual_seed(0)
    encoder = T5Encoder(TINY_T5)
    a, _ = encoder.encode(["ab"])
    b, _ = encoder.encode(["ba"])
    assert not torch.allclose(a[0, 0], b[0, 1], atol=1e-4)


def test_decoder_is_causal():
    torch.manual_seed(0)
    encoder, decoder = T5Encoder(TINY_T5), T5Decoder(TINY_T5)
    memory, mask = encoder.encode(["a piano piece"])
    ids = torch.randint(BYTE_OFFSET, text.VOCAB_SIZE, (1, 6))
    changed = ids.clone()
    changed[0, 4] = PAD
    with torch.no_grad():
        a, b = decoder(ids, memory, mask), decoder(changed, memory, mask)
    assert torch.allclose(a[0, :4], b[0, :4], atol=1e-6) and not torch.allclose(a[0, 4], b[0, 4])


def test_pretraining_loss_is_a_cross_entropy_over_the_targets():
    torch.manual_seed(0)
    encoder, decoder = T5Encoder(TINY_T5), T5Decoder(TINY_T5)
    batch = text.t5_training_batch(encoder.tokenizer, CAPTIONS[:2], 3, torch.Generator().manual_seed(0))
    inputs, input_mask, targets, target_mask = batch
    assert len(inputs) == 3 and (targets[target_mask] != PAD).all()
    loss = text.t5_pretrain_loss(encoder, decoder, *batch)
    assert abs(loss.item() - math.log(text.VOCAB_SIZE)) < 1.5  # an untrained decoder: near uniform
    again = text.t5_training_batch(encoder.tokenizer, CAPTIONS[:2], 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batch, again))


@pytest.mark.slow  # trains the T5 stage for real
def test_the_t5_stage_learns_to_fill_in_spans(tmp_path):
    """The recipe train.py runs (t5_training_batch -> t5_pretrain_loss -> AdamW), overfitting 4 clips' captions."""
    metrics, history = train_stage(tmp_path, "t5", num_clips=4, num_val_clips=2, seconds=0.32,
                                   t5=StageSize(60, 8, 3e-3))
    losses = [row["loss"] for row in history]
    assert losses[0] > math.log(text.VOCAB_SIZE) - 1.5  # starts near uniform over the vocabulary
    assert sum(losses[-10:]) / 10 < 0.6 * losses[0]
    assert math.isfinite(metrics["val_denoising_loss"])


# ----------------------------------------------------------------------------- span corruption

def uncorrupt(inputs, targets):
    """Put each target span back in place of its sentinel (the inverse of span_corrupt)."""
    spans, key = {}, None
    for token in targets:
        if 2 <= token < BYTE_OFFSET:
            key = token
            spans[key] = []
        elif token != EOS:
            spans[key].append(token)
    return [byte for token in inputs for byte in spans.get(token, [token])]


def test_span_corruption_round_trip_and_sentinel_order():
    ids, mask = ByteTokenizer()(CAPTIONS * 8)
    generator = torch.Generator().manual_seed(0)
    inputs, input_mask, targets, target_mask = span_corrupt(ids, mask, generator)
    for row in range(len(ids)):
        source, x, y = ids[row][mask[row]].tolist(), inputs[row][input_mask[row]].tolist(), targets[row][target_mask[row]].tolist()
        assert x[-1] == EOS and y[-1] == EOS
        for seq in (x, y):
            found = [t for t in seq if 2 <= t < BYTE_OFFSET]
            assert found == [sentinel(k) for k in range(len(found))]
        assert uncorrupt(x, y) == source
    assert targets[2][target_mask[2]].tolist() == [EOS] and inputs[2][input_mask[2]].tolist() == [EOS]


def test_span_corruption_noise_density_and_span_length():
    captions = ["An upbeat, cheerful flute melody in a major key at a walking pace, with drums and percussion."] * 200
    ids, mask = ByteTokenizer()(captions)
    inputs, input_mask, targets, target_mask = span_corrupt(ids, mask, torch.Generator().manual_seed(1))
    is_sentinel = lambda t: (t >= 2) & (t < BYTE_OFFSET)
    noise = (target_mask & ~is_sentinel(targets) & (targets != EOS)).sum().item()
    spans = is_sentinel(targets).sum().item()
    total = (mask.sum() - len(captions)).item()
    assert abs(noise / total - 0.15) < 0.01
    assert 2.5 < noise / spans < 3.5
    again = span_corrupt(ids, mask, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs) and torch.equal(again[2], targets)


# ----------------------------------------------------------------------------- CLAP

def test_info_nce_uninformative_is_log_n():
    same = torch.nn.functional.normalize(torch.ones(8, 16), dim=-1)
    assert info_nce(same, same, torch.tensor(10.0)).item() == pytest.approx(math.log(8), abs=1e-6)


def test_info_nce_matched_orthogonal_goes_to_zero():
    eye = torch.eye(8, 16)
    assert info_nce(eye, eye, torch.tensor(1.0)).item() > 0.5
    assert info_nce(eye, eye, torch.tensor(100.0)).item() < 1e-6


def test_info_nce_matches_its_formula():
    torch.manual_seed(0)
    t, a = torch.nn.functional.normalize(torch.randn(2, 6, 4), dim=-1)
    s = t @ a.T * 3.0
    by_hand = (-(s.diagonal() - s.logsumexp(1)).mean() - (s.diagonal() - s.logsumexp(0)).mean()) / 2
    assert info_nce(t, a, 3.0).item() == pytest.approx(by_hand.item(), abs=1e-6)


def test_clap_shapes_norms_and_clamped_temperature():
    torch.manual_seed(0)
    clap = CLAP(CLAPConfig(embed_dim=16, text_width=32, text_layers=1, audio_width=8))
    y = clap.embed_text(["a piano piece", ""])
    assert y.shape == (2, 16) and torch.allclose(y.norm(dim=-1), torch.ones(2))
    ids, mask = ByteTokenizer()(["a piano piece", ""])
    assert torch.allclose(clap.embed_text((ids, mask)), y, atol=1e-6)
    audio = clap.embed_audio(torch.randn(3, 200, 64))
    assert audio.shape == (3, 16) and torch.allclose(audio.norm(dim=-1), torch.ones(3))
    assert clap.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        clap.logit_scale.fill_(10.0)
    assert clap.scale().item() == pytest.approx(100.0, rel=1e-5)


def test_retrieval_metrics_known_ranks():
    audio = torch.eye(4)
    # caption 0 -> its clip ranks 1st; caption 1 -> 2nd; caption 2 -> 3rd; caption 3 -> 4th
    texts = torch.tensor([[1.0, 0, 0, 0], [0.9, 0.5, 0, 0], [0.9, 0, 0.3, 0.5], [0.9, 0.8, 0.7, 0.1]])
    assert retrieval_metrics(texts, audio, ks=(1, 2, 3, 4)) == {"R@1": 0.25, "R@2": 0.5, "R@3": 0.75, "R@4": 1.0}


def test_zero_shot_picks_the_matching_prompt():
    torch.manual_seed(0)
    clap = CLAP(CLAPConfig(embed_dim=16, text_width=32, text_layers=1, audio_width=8))
    prompts = {"piano": ["a piano piece"], "guitar": ["a guitar piece"], "organ": ["an organ piece"]}
    as_if_audio = clap.embed_text(["an organ piece", "a piano piece"])
    assert text.zero_shot_classify(clap, as_if_audio, prompts) == ["organ", "piano"]


def test_clap_training_batch_pairs_each_caption_with_its_own_clip():
    captions, mels = [f"clip {i}" for i in range(10)], torch.arange(10.0)[:, None, None].expand(10, 4, 64)
    chosen, chosen_mels = text.clap_training_batch(captions, mels, 6, torch.Generator().manual_seed(0))
    assert len(chosen) == 6 and chosen_mels.shape == (6, 4, 64)
    assert all(caption == f"clip {int(mel[0, 0])}" for caption, mel in zip(chosen, chosen_mels))


@pytest.mark.slow  # trains the CLAP stage for real: over a minute
def test_the_clap_stage_beats_chance_on_held_out_combinations(tmp_path):
    """The recipe train.py runs (clap_training_batch -> CLAP.loss -> AdamW), a few hundred steps on
    short clips. The test split's attribute combinations never occur in training, so retrieval
    there needs words and sounds matched piece by piece."""
    metrics, history = train_stage(tmp_path, "clap", num_clips=512, num_val_clips=96, seconds=1.0,
                                   clap=StageSize(300, 16, 4e-3))
    losses = [row["loss"] for row in history]
    assert sum(losses[-20:]) / 20 < math.log(16) - 1.0  # log 16 = 2.77 is the loss of knowing nothing
    assert metrics["chance_R@5"] == 5 / 96
    assert metrics["R@5"] > 3 * metrics["chance_R@5"]
    assert metrics["zero_shot_instrument"] > 2 / 6  # chance is 1/6
