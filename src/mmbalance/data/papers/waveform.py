"""Audio for the paper datasets: WAV reading, resampling in torch, the papers' spectrogram recipes, the reader.

WAV files are read with Python's :mod:`wave` module (8/16/24/32-bit integer PCM) or, if it is installed,
with ``soundfile`` (any format it supports, e.g. float WAV, FLAC). Channels are averaged to mono and
samples scaled to [-1, 1], as ``librosa.load(mono=True)`` and ``torchaudio.load`` do.

Resampling (:func:`resample`) is band-limited windowed-sinc interpolation done as a polyphase filter bank
in torch: the rate ratio is reduced by the gcd to ``new/orig``; each of the ``new`` output phases has
its own FIR kernel ``sinc(pi * f_c * t) * hann^2`` of ``2 * ceil(6 * orig / f_c) + orig`` taps with
cut-off ``f_c = 0.99 * min(orig, new)`` (in units of the reduced rates; 6 zero crossings each side), and
one strided ``conv1d`` computes all phases. This is the algorithm of torchaudio's ``resample``
(``sinc_interp_hann``). librosa's default (soxr) uses a different filter, so values differ slightly.

Recipes (``data.options.audio`` / ``mmbalance prepare --audio``) -- see :data:`RECIPES`:

=================  ==============================================================================
``ogm-ge``         22,050 Hz, tiled to 3 s, clipped to [-1, 1], STFT n_fft 512 hop 353,
                   ``log(|S| + 1e-7)`` -> 257 x 188 (OGM-GE CREMA-D; D&R / MMPareto substitute)
``bss-cremad``     as ``ogm-ge`` but tiled to 20 s -> 257 x 1250 (IJCAI25-BSS CREMA-D code)
``bss-ks``         35,400 Hz, tiled to >= 10 s, first 10 s, STFT 512/353 -> 257 x 1003 (BSS KS code)
``ogm-vggsound``   16,000 Hz, tiled to 10 s, STFT n_fft 256 hop 128 -> 129 x 1251; the loader then takes
                   a 626-frame (5 s) window, random in training (OGM-GE VGGSound)
``ks-fbank``       the file's own rate; Kaldi fbank 128 mel, Hanning, 10 ms, padded/cut to 1024
                   frames, ``(x + 4.503877) / (2 * 5.141276)`` -> 1024 x 128 (OGM-GE KS process_audio.py)
=================  ==============================================================================

"Tiled to L" repeats the clip until it is at least L long and keeps the first L; for clips of at least
L/3 this equals OGM-GE's ``np.tile(x, 3)[:L]``.
"""
from __future__ import annotations

import math
import os
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import stft_log_magnitude
from ..base import DataError
from .common import Reader, Record, fix_length, load_array_file
from .fbank import ks_fbank


# ---------------------------------------------------------------------------------------------- reading
def read_wav(path: os.PathLike) -> Tuple[torch.Tensor, int]:
    """Mono float32 waveform in [-1, 1] and its sample rate; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing audio file {path}")
    try:
        import soundfile  # type: ignore

        try:
            data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
            return torch.from_numpy(np.ascontiguousarray(data.mean(axis=1))), int(sr)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"cannot read audio {path} (truncated or corrupt?): {e}") from None
    except ImportError:
        pass
    try:
        with wave.open(str(path), "rb") as w:
            ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        hint = " (float or compressed WAV: install `soundfile`)" if "unknown format" in str(e) else ""
        raise DataError(f"cannot read WAV {path} (truncated or corrupt?): {e}{hint}") from None
    if len(raw) != n * ch * width or n == 0:
        raise DataError(f"WAV {path} is truncated or empty: header says {n} frames, data has "
                        f"{len(raw) // max(ch * width, 1)}")
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:  # pragma: no cover - wave rejects other widths
        raise DataError(f"WAV {path}: unsupported sample width {width}")
    x = x.reshape(-1, ch).mean(axis=1)
    return torch.from_numpy(np.ascontiguousarray(x)), int(sr)


def write_wav(path: os.PathLike, waveform, sample_rate: int) -> None:
    """Write a mono 16-bit PCM WAV (used by tests and fixtures)."""
    x = np.clip(np.asarray(waveform, dtype=np.float64), -1.0, 1.0)
    pcm = np.round(x * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())


# ---------------------------------------------------------------------------------------------- resampling
def _sinc_kernels(orig: int, new: int, zeros: int, rolloff: float, dtype) -> Tuple[torch.Tensor, int]:
    base = min(orig, new) * rolloff
    width = math.ceil(zeros * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, :] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None] / new + idx
    t = (t * base).clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    kern = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / orig)
    return kern.to(dtype), width


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, zeros: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling of ``[time]`` or ``[batch, time]`` (see the module docstring).

    The output has ``ceil(time * new_rate / orig_rate)`` samples.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    x = torch.as_tensor(waveform)
    if not x.is_floating_point():
        x = x.float()
    if orig_rate == new_rate:
        return x
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    squeeze = x.dim() == 1
    x2 = x.reshape(1, -1) if squeeze else x
    n = x2.shape[-1]
    kern, width = _sinc_kernels(orig, new, zeros, rolloff, x2.dtype)
    padded = F.pad(x2.unsqueeze(1), (width, width + orig))
    y = F.conv1d(padded, kern.unsqueeze(1), stride=orig)  # [B, new, frames]
    y = y.transpose(1, 2).reshape(x2.shape[0], -1)
    y = y[:, : math.ceil(new * n / orig)]
    return y[0] if squeeze else y


def tile_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat ``x`` until it has at least ``length`` samples and keep the first ``length``."""
    if x.numel() == 0:
        raise DataError("empty waveform")
    reps = -(-length // x.shape[-1])
    return x.repeat(reps)[:length] if reps > 1 else x[:length]


# ---------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class AudioRecipe:
    """How a waveform becomes the audio input. ``time_axis``: the axis of time in the 2-D output."""

    name: str
    feature: str  # "stft" | "ks-fbank"
    sample_rate: Optional[int]  # None: keep the file's rate
    seconds: Optional[float]  # tile/cut to this length; None: natural length
    clip: bool = True
    n_fft: int = 512
    hop: int = 353
    time_axis: int = -1
    window_frames: Optional[int] = None  # default option audio_frames (loader-side window)

    def compute(self, waveform: torch.Tensor, sr: int) -> torch.Tensor:
        """2-D float32 feature of a mono waveform at rate ``sr``."""
        x = waveform.float()
        if self.sample_rate is not None and sr != self.sample_rate:
            x = resample(x, sr, self.sample_rate)
            sr = self.sample_rate
        if self.seconds is not None:
            x = tile_to(x, int(round(self.seconds * sr)))
        if self.clip:
            x = x.clamp(-1.0, 1.0)
        if self.feature == "stft":
            return stft_log_magnitude(x, n_fft=self.n_fft, hop_length=self.hop).float()
        if self.feature == "ks-fbank":
            return ks_fbank(x, sr).float()
        raise DataError(f"audio recipe {self.name!r}: unknown feature {self.feature!r}")

    def describe(self) -> dict:
        return asdict(self)


RECIPES = {
    "ogm-ge": AudioRecipe("ogm-ge", "stft", 22050, 3.0),
    "bss-cremad": AudioRecipe("bss-cremad", "stft", 22050, 20.0),
    "bss-ks": AudioRecipe("bss-ks", "stft", 35400, 10.0),
    "ogm-vggsound": AudioRecipe("ogm-vggsound", "stft", 16000, 10.0, n_fft=256, hop=128, window_frames=626),
    "ks-fbank": AudioRecipe("ks-fbank", "ks-fbank", None, None, clip=False, time_axis=0),
}


def get_recipe(name: str) -> AudioRecipe:
    if name not in RECIPES:
        from ...registry import suggest

        raise DataError(f"unknown audio recipe {name!r}.{suggest(name, RECIPES)} Recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


# ---------------------------------------------------------------------------------------------- reader
class AudioReader(Reader):
    """One clip's audio -> ``[1, A, B]`` float32 (a 1-channel image for the audio encoder).

    ``record.paths[modality]`` is a ``.wav`` (computed on the fly with ``recipe``) or a stored 2-D
    array (``.npy``, ``.npz``, ``.pt``, ``.pkl``: the layouts of OGM-GE/KS, D&R/MMPareto, PMR/BSS, MLA).
    ``frames``: fixed number of time steps along ``time_axis`` (crop or zero-pad) so that clips stack;
    ``random_crop``: in training the window starts at a random offset (evaluation: at 0).
    """

    kind = "audio"

    def __init__(self, modality: str, recipe: Optional[AudioRecipe], frames: Optional[int] = None,
                 random_crop: bool = False, time_axis: Optional[int] = None):
        self.modality, self.recipe = modality, recipe
        self.frames = int(frames) if frames else None
        self.random_crop = bool(random_crop)
        self.time_axis = time_axis if time_axis is not None else (recipe.time_axis if recipe else -1)

    def raw(self, path) -> torch.Tensor:
        path = Path(path)
        if path.suffix.lower() in (".wav", ".flac", ".ogg"):
            if self.recipe is None:
                raise DataError(f"{path}: a waveform needs an audio recipe (data.options.audio)")
            x, sr = read_wav(path)
            return self.recipe.compute(x, sr)
        arr = load_array_file(path, self.trust_pickle)
        t = torch.from_numpy(np.ascontiguousarray(arr)).float()
        while t.dim() > 2 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 2:
            raise DataError(f"{path}: expected a 2-D spectrogram/fbank array, got shape {tuple(arr.shape)}")
        if not torch.isfinite(t).all():
            raise DataError(f"{path}: array has NaN/inf values")
        return t

    def read(self, record: Record, train: bool) -> torch.Tensor:
        x = self.raw(record.paths[self.modality])
        if self.frames:
            axis = self.time_axis % 2
            size = x.shape[axis]
            off = 0
            if train and self.random_crop and size > self.frames:
                off = int(torch.randint(0, size - self.frames + 1, (1,)))
            x = fix_length(x, self.frames, dim=axis, offset=off)
        return x.unsqueeze(0)


__all__ = ["read_wav", "write_wav", "resample", "tile_to", "AudioRecipe", "RECIPES", "get_recipe", "AudioReader"]
