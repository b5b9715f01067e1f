"""Plain-torch audio features (no torchaudio, no librosa).

Three small building blocks used by the dataset loaders and the embedded-data build scripts:

* :func:`mel_filterbank` -- an HTK-style triangular mel filterbank, as a ``[n_mels, n_freqs]`` matrix;
* :func:`log_mel` -- log mel power spectrogram (``torch.stft`` with a Hann window, power, mel, ``log(x + 1e-6)``);
* :func:`stft_log_magnitude` -- ``log(|STFT| + 1e-7)``, the spectrogram recipe of the OGM-GE code base
  (``n_fft=512, hop_length=353``).

All functions accept a 1-D waveform ``[time]`` or a batch ``[batch, time]`` and keep the dtype of the input
(float32 or float64; integer input is converted to float32).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["hz_to_mel", "mel_to_hz", "mel_filterbank", "log_mel", "stft_log_magnitude"]


def hz_to_mel(freq: float | Tensor) -> float | Tensor:
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    if isinstance(freq, Tensor):
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def mel_to_hz(mel: float | Tensor) -> float | Tensor:
    """Inverse of :func:`hz_to_mel`: ``700 * (10 ** (m / 2595) - 1)``."""
    if isinstance(mel, Tensor):
        return 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """HTK-style triangular mel filterbank.

    Args:
        n_freqs: number of STFT frequency bins, ``n_fft // 2 + 1``; bin ``k`` is at ``k * sr / n_fft`` Hz.
        n_mels: number of mel bands.
        sample_rate: sampling rate of the waveform in Hz.
        f_min: lowest band edge in Hz.
        f_max: highest band edge in Hz (default: Nyquist, ``sample_rate / 2``).
        dtype: dtype of the returned matrix.

    Returns:
        ``Tensor[n_mels, n_freqs]``; row ``m`` is the triangle of band ``m``, so that
        ``mel_power = fb @ power_spectrum`` for a power spectrum ``[n_freqs, frames]``.
        ``n_mels + 2`` edges are equally spaced on the HTK mel scale between ``f_min`` and ``f_max``;
        triangle ``m`` rises from edge ``m`` to 1 at edge ``m + 1`` and falls to 0 at edge ``m + 2``
        (no area normalisation). Consequently the columns sum to 1 for every frequency between the first
        and the last band centre: the triangles are a partition of unity there.
    """
    if n_freqs < 2 or n_mels < 1:
        raise ValueError(f"need n_freqs >= 2 and n_mels >= 1, got n_freqs={n_freqs}, n_mels={n_mels}")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}")
    freqs = torch.linspace(0.0, sample_rate / 2.0, n_freqs, dtype=torch.float64)  # bin centres, Hz
    mel_edges = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    hz_edges = mel_to_hz(mel_edges)
    lower, centre, upper = hz_edges[:-2, None], hz_edges[1:-1, None], hz_edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return fb.to(dtype)


def _as_float(waveform: Tensor) -> Tensor:
    waveform = torch.as_tensor(waveform)
    if not waveform.is_floating_point():
        waveform = waveform.to(torch.float32)
    if waveform.dim() not in (1, 2):
        raise ValueError(f"waveform must be [time] or [batch, time], got shape {tuple(waveform.shape)}")
    return waveform


def _stft(waveform: Tensor, n_fft: int, hop_length: int) -> Tensor:
    window = torch.hann_window(n_fft, dtype=waveform.dtype, device=waveform.device)
    return torch.stft(
        waveform, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window=window,
        center=True, pad_mode="reflect", return_complex=True,
    )


def log_mel(
    waveform: Tensor,
    sample_rate: int,
    n_fft: int = 512,
    hop_length: int = 256,
    n_mels: int = 40,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> Tensor:
    """Log mel power spectrogram.

    ``torch.stft`` (Hann window of ``n_fft`` samples, centred frames, reflect padding) -> power ``|X|^2``
    -> :func:`mel_filterbank` -> ``log(x + 1e-6)``.

    Args:
        waveform: ``[time]`` or ``[batch, time]``; any amplitude scale (the embedded data use [-1, 1]).
        sample_rate: sampling rate in Hz (used only for the mel band edges).
        n_fft, hop_length: STFT size and hop in samples.
        n_mels: number of mel bands.
        f_min, f_max: band edges passed to :func:`mel_filterbank`.

    Returns:
        ``Tensor[n_mels, frames]`` (or ``[batch, n_mels, frames]``) with
        ``frames = 1 + time // hop_length``.
    """
    waveform = _as_float(waveform)
    power = _stft(waveform, n_fft, hop_length).abs().pow(2)  # [..., n_freqs, frames]
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max, dtype=power.dtype).to(power.device)
    return torch.log(torch.matmul(fb, power) + 1e-6)


def stft_log_magnitude(waveform: Tensor, n_fft: int = 512, hop_length: int = 353) -> Tensor:
    """Log magnitude spectrogram ``log(|STFT| + 1e-7)`` (the OGM-GE audio recipe).

    Hann window of ``n_fft`` samples, centred frames, reflect padding.

    Returns:
        ``Tensor[n_fft // 2 + 1, frames]`` (or ``[batch, n_fft // 2 + 1, frames]``) with
        ``frames = 1 + time // hop_length``.
    """
    waveform = _as_float(waveform)
    return torch.log(_stft(waveform, n_fft, hop_length).abs() + 1e-7)
