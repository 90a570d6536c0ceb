"""The attribute classifier: does a clip have the instrument, tempo, mode and drums it should?

The built-in dataset knows every clip's attributes, so a classifier trained on real clips can
check generated ones (`evaluate.py`) and find where along the pipeline an attribute is lost
(`evaluate.py --chain`). It sees hand-made features with a tiny learned head on top:

* timbre and drums: the mean and spread over time of each of the 64 log-mel bands;
* tempo: the autocorrelation of the onset strength o(t) = mean_f relu(mel[t+1, f] - mel[t, f])
  (spectral flux: energy arriving), for lags of 10 ms to 1.2 s. Notes fall on an eighth-note
  grid, so it peaks at the eighth's period;
* mode: a chroma vector, the energy per pitch class c(p) = sum of spectrum bins whose frequency
  is nearest pitch class p (60 Hz to 2.1 kHz), for the whole clip and for its opening (every
  progression opens on the tonic chord). Mode needs the tonic, so the mode head scores the
  chroma against a learned major and a learned minor key profile in all 12 rotations (keys) and
  keeps the best, softly: the learned form of Krumhansl's key finding.

Two inputs, one recipe:

* `input="audio"` reads waveforms, with the chroma from a fine STFT (4096 points: 3.9 Hz bins,
  a semitone is 6 Hz even at 100 Hz). It is trained on each real clip and on its Griffin-Lim
  copy (waveform -> mel -> Griffin-Lim), because Griffin-Lim's phase artefacts alone fool a
  classifier trained on clean audio (instrument 0.44, mode 0.64 on the test clips): it should
  measure what the music is, not how well its phase was guessed;
* `input="mel"` reads log-mels directly, with the chroma from the mel's own least-squares
  linear spectrum (`vocoder.mel_to_linear`, 15.6 Hz bins). It hears exactly what the 64-band
  mel keeps, with no waveform in between: the mel-domain column of the attribute chain, which
  tells the flow model's and the VAE's losses apart from the vocoder's. (Measured on pure
  tones: that spectrum names the pitch class exactly above ~500 Hz, and to within a semitone
  below, where one mel band is wider than a semitone.)

References
- Krumhansl, "Cognitive Foundations of Musical Pitch", Oxford University Press, 1990 (key profiles)
- Ellis, "Beat Tracking by Dynamic Programming", J. New Music Research 36(1), 2007 (onset
  strength and its autocorrelation for tempo)
"""

import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import load_checkpoint, save_checkpoint
from audio import FRAMES_PER_SECOND, HOP, N_FFT, N_MELS, SAMPLE_RATE, MelSpectrogram, griffin_lim, mel_analyser, mel_to_linear
from data import SynthMusicDataset
from music import INSTRUMENTS, MODES, TEMPOS

ATTRIBUTES = {"instrument": INSTRUMENTS, "tempo": tuple(TEMPOS), "mode": MODES, "drums": (False, True)}
CHANCE = {name: 1 / len(values) for name, values in ATTRIBUTES.items()}
INPUTS = ("audio", "mel")


def accuracy(posteriors, attributes):
    """{head: share of clips whose most likely value is the true one}."""
    return {name: sum(ATTRIBUTES[name][i] == a[name] for i, a in zip(p.argmax(1).tolist(), attributes))
            / len(attributes) for name, p in posteriors.items()}


@dataclass
class ClassifierConfig:
    hidden: int = 128
    lags: int = 120              # onset autocorrelation up to 1.2 s: a beat at 50 bpm
    chroma_fft: int = 4096       # audio input: 3.9 Hz bins, a semitone is 6 Hz even at 100 Hz
    chroma_hop: int = 512
    chroma_hz: tuple = (60.0, 2100.0)
    opening_seconds: float = 0.5  # every progression opens on the tonic chord
    input: str = "audio"          # "audio" (waveforms) or "mel" (log-mels: the chroma from the mel itself)

    def __post_init__(self):
        if self.input not in INPUTS:
            raise ValueError(f"ClassifierConfig: input must be one of {INPUTS}, got {self.input!r}")

    @property
    def spectrum_fft_and_hop(self):
        """The (n_fft, hop) of the spectrum the chroma is folded from."""
        return (self.chroma_fft, self.chroma_hop) if self.input == "audio" else (N_FFT, HOP)


def chroma_matrix(config):
    """(12, bins) 0/1 matrix that adds each spectrum bin into its nearest pitch class (C = 0)."""
    n_fft, _ = config.spectrum_fft_and_hop
    hz = torch.arange(n_fft // 2 + 1) * SAMPLE_RATE / n_fft
    pitch_class = (torch.round(12 * torch.log2(hz.clamp(min=1.0) / 440.0) + 69) % 12).long()
    used = (hz > config.chroma_hz[0]) & (hz < config.chroma_hz[1])
    return F.one_hot(pitch_class, 12).T.float() * used


def onset_autocorrelation(mel, max_lag=120):
    """(B, T, 64) log-mels -> (B, max_lag - 1): the autocorrelation of the spectral flux (energy
    arriving, frame by frame) at lags 1 .. max_lag - 1, each over the flux's power: how regular the
    onsets are at each spacing, the tempo head's feature."""
    onset = F.relu(mel.diff(dim=1)).mean(2)
    onset = onset - onset.mean(1, keepdim=True)
    power = onset.square().mean(1) + 1e-8
    return torch.stack([(onset[:, :-lag] * onset[:, lag:]).mean(1) / power for lag in range(1, max_lag)], 1)


class AttributeClassifier(nn.Module):
    """waveform (B, N), or log-mel (B, T, 64) for input="mel" -> {head: logits};
    the features are fixed, the heads are learned."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        num_features = 2 * N_MELS + config.lags
        self.mel = MelSpectrogram()
        self.register_buffer("chroma_fold", chroma_matrix(config), persistent=False)
        self.register_buffer("window", torch.hann_window(config.chroma_fft), persistent=False)
        # feature standardisation, measured on the training clips
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))
        self.trunk = nn.Sequential(nn.Linear(num_features, config.hidden), nn.GELU())
        self.heads = nn.ModuleDict({name: nn.Linear(config.hidden, len(values))
                                    for name, values in ATTRIBUTES.items() if name != "mode"})
        # (mode, whole clip / opening, pitch class above the tonic)
        self.key_profiles = nn.Parameter(0.1 * torch.randn(len(MODES), 2, 12))

    def features(self, clips):
        """clips -> (summary (B, 2 * 64 + lags), chroma (B, 2, 12) of the whole clip and of its opening)."""
        c = self.config
        mel = self.mel(clips) if c.input == "audio" else clips
        if mel.shape[1] <= c.lags + 1:
            raise ValueError(f"the attribute classifier needs clips longer than {(c.lags + 2) / FRAMES_PER_SECOND:.2f} s")
        timbre = torch.cat([mel.mean(1), mel.std(1)], dim=1)
        rhythm = onset_autocorrelation(mel, c.lags + 1)
        if c.input == "audio":
            spectrum = torch.stft(clips, c.chroma_fft, c.chroma_hop, window=self.window, return_complex=True).abs()
        else:  # what the mel itself says about the fine spectrum: the least-squares inverse of its filterbank
            spectrum = mel_to_linear(mel).transpose(1, 2)
        chroma = self.chroma_fold @ spectrum  # (B, 12, frames)
        _, hop = c.spectrum_fft_and_hop
        opening = chroma[..., :max(1, round(c.opening_seconds * SAMPLE_RATE / hop))]
        chroma = torch.stack([chroma.sum(-1), opening.sum(-1)], dim=1)
        # only the profile's shape matters, not the loudness: zero mean, unit spread over the 12 classes
        chroma = (chroma - chroma.mean(-1, keepdim=True)) / (chroma.std(-1, keepdim=True) + 1e-8)
        return torch.cat([timbre, rhythm], dim=1), chroma

    def forward(self, clips=None, features=None):
        summary, chroma = self.features(clips) if features is None else features
        hidden = self.trunk((summary - self.feature_mean) / self.feature_std)
        logits = {name: head(hidden) for name, head in self.heads.items()}
        # score every key: the chroma rotated so that pitch class r sits at 0, against each profile
        rotated = torch.stack([chroma.roll(-r, dims=-1) for r in range(12)], dim=1)  # (B, 12, 2, 12)
        scores = torch.einsum("brsp,msp->bmr", rotated, self.key_profiles)
        logits["mode"] = scores.logsumexp(-1)  # a soft max over the 12 keys
        return {name: logits[name] for name in ATTRIBUTES}

    @torch.no_grad()
    def posteriors(self, clips, batch_size=64):
        """(N, samples) waveforms or (N, T, 64) log-mels -> {head: (N, K) probabilities}."""
        chunks = [self(c.to(self.feature_mean.device)) for c in clips.split(batch_size)]
        return {name: torch.cat([c[name] for c in chunks]).softmax(-1).cpu() for name in ATTRIBUTES}


def labels(attributes, device=None):
    return {name: torch.tensor([values.index(a[name]) for a in attributes], device=device)
            for name, values in ATTRIBUTES.items()}


def render(split, num_clips, seconds, seed):
    """(audio (N, samples), captions, attributes) of the synthetic dataset's first clips."""
    dataset = SynthMusicDataset(split, num_clips, seconds, seed)
    items = [dataset[i] for i in range(num_clips)]
    return torch.stack([it["audio"] for it in items]), [it["caption"] for it in items], \
        [it["attributes"] for it in items]


@torch.enable_grad()  # it trains, even when called from code that measures under torch.no_grad
def train_classifier(clips, attributes, steps=600, batch_size=64, lr=3e-3, seed=0, config=None):
    """Fit the heads on real clips (waveforms, or log-mels for input="mel") with cross-entropy
    summed over the four attributes."""
    torch.manual_seed(seed)
    config = config or ClassifierConfig()
    device = clips.device
    model = AttributeClassifier(config).to(device)
    with torch.no_grad():
        feats = [model.features(c) for c in clips.split(64)]
    summary, chroma = torch.cat([f[0] for f in feats]), torch.cat([f[1] for f in feats])
    model.feature_mean.copy_(summary.mean(0))
    model.feature_std.copy_(summary.std(0) + 1e-5)
    targets = labels(attributes, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        ids = torch.randint(len(summary), (batch_size,), generator=generator).to(device)
        logits = model(features=(summary[ids], chroma[ids]))
        loss = sum(F.cross_entropy(logits[name], targets[name][ids]) for name in ATTRIBUTES)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def through_griffin_lim(audio, batch_size=16):
    """Each clip as the pipeline plays a mel back without a vocoder: waveform -> log-mel -> Griffin-Lim."""
    mel = mel_analyser(audio.device)
    return torch.cat([griffin_lim(mel(a)) for a in audio.split(batch_size)])[:, :audio.shape[1]]


@torch.no_grad()
def log_mels(audio, batch_size=64):
    mel = mel_analyser(audio.device)
    return torch.cat([mel(a) for a in audio.split(batch_size)])


def load_or_train_classifier(run_dir, seconds, seed=0, num_clips=1200, steps=600, device="cpu", log=print,
                             input="audio"):
    """The run's attribute classifier for waveforms (<run>/attribute_classifier.pt) or log-mels
    (<run>/mel_attribute_classifier.pt), trained once if missing; returns (model, held-out accuracy)."""
    path = os.path.join(run_dir, "attribute_classifier.pt" if input == "audio" else "mel_attribute_classifier.pt")
    recipe = {"seconds": seconds, "seed": seed, "num_clips": num_clips, "steps": steps,
              "griffin_lim_copies": input == "audio", "input": input}
    if os.path.exists(path):
        saved = load_checkpoint(path, made_by=f"python evaluate.py --run {run_dir}")
        if saved["recipe"] == recipe:
            model = AttributeClassifier(ClassifierConfig(**saved["config"]))
            model.load_state_dict(saved["model"])
            return model.to(device).eval(), saved["test_accuracy"]
    copies = " and their Griffin-Lim copies" if input == "audio" else " (their log-mels)"
    log(f"training the {input} attribute classifier on {num_clips} real clips{copies} ({steps} steps) -> {path}")
    audio, _, attributes = render("train", num_clips, seconds, seed)
    test_audio, _, test_attributes = render("test", min(256, num_clips), seconds, seed + 1)  # no metric row uses these
    config = ClassifierConfig(input=input)
    if input == "audio":
        model = train_classifier(torch.cat([audio, through_griffin_lim(audio)]).to(device), attributes * 2, steps,
                                 seed=seed, config=config)
        test_accuracy = {"clean": accuracy(model.posteriors(test_audio), test_attributes),
                         "griffin_lim": accuracy(model.posteriors(through_griffin_lim(test_audio)), test_attributes)}
    else:
        model = train_classifier(log_mels(audio).to(device), attributes, steps, seed=seed, config=config)
        test_accuracy = {"log_mel": accuracy(model.posteriors(log_mels(test_audio)), test_attributes)}
    save_checkpoint({"config": asdict(model.config), "model": model.state_dict(), "recipe": recipe,
                     "test_accuracy": test_accuracy}, path)
    return model, test_accuracy


# ----------------------------------------------------------------------------- the beat grid (experiments/)
# The tempo head hears how often onsets come. These ask more of the onsets, for experiments/ and
# docs/RESULTS.md ("The beat grid"): is there a steady pulse, is it the asked one, and do the
# onsets sit on the clip's eighth-note grid?

def eighth_frames(bpm):
    """Log-mel frames in an eighth note (half a beat) at `bpm`."""
    return 30 * FRAMES_PER_SECOND / bpm


def onset_peaks(onset):
    """Frames where one clip's spectral flux (T,) has a local maximum above its mean + one standard deviation."""
    high = onset.mean() + onset.std()
    return [t for t in range(1, len(onset) - 1)
            if onset[t] > high and onset[t] >= onset[t - 1] and onset[t] >= onset[t + 1]]


def onsets_on_grid(mel, attributes, lead=3, tolerance=3):
    """Share of onset peaks within `tolerance` frames of each clip's eighth-note grid, for the first peak
    after the opening note and for all later ones; and of the later ones on the grid through the first
    peak (the spacing kept, whatever the phase). The flux peaks `lead` frames early: the 1024-sample
    window reaches a note 3.2 frames before its centre does."""
    first, later, kept = [], [], []
    for clip, a in zip(mel, attributes):
        eighth = eighth_frames(a["bpm"])
        peaks = [p for p in onset_peaks(F.relu(clip.diff(dim=0)).mean(1)) if p > 8]
        near = [min(abs(p - (k * eighth - lead)) for k in range(1, int(len(clip) / eighth) + 2)) <= tolerance
                for p in peaks]
        first += near[:1]
        later += near[1:]
        kept += [min(abs(p - peaks[0] - k * eighth) for k in range(int(len(clip) / eighth) + 2)) <= tolerance
                 for p in peaks[1:]]
    return {"first_onset_on_grid": sum(first) / max(1, len(first)),
            "later_onsets_on_grid": sum(later) / max(1, len(later)),
            "later_onsets_on_first_onsets_grid": sum(kept) / max(1, len(kept))}


def beat_grid(mel, attributes):
    """The pulse of a set of log-mels: the autocorrelation's highest peak at the lags of 60-160 bpm
    eighths and quarters (15-110 frames: any steady pulse?), its value at each clip's true eighth (the
    asked pulse?), and onsets_on_grid. Means over the clips."""
    ac = onset_autocorrelation(mel)
    eighth = [round(eighth_frames(a["bpm"])) for a in attributes]
    return {"pulse_peak": ac[:, 14:110].max(1).values.mean().item(),
            "at_true_eighth": torch.stack([ac[i, e - 1] for i, e in enumerate(eighth)]).mean().item(),
            **onsets_on_grid(mel, attributes)}
