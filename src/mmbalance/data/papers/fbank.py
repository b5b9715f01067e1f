"""Kaldi-style filterbank features in plain torch (the computation of ``torchaudio.compliance.kaldi.fbank``).

Pipeline per frame (Kaldi ``compute-fbank-feats`` semantics, defaults as in torchaudio): split the waveform
into frames of ``frame_length`` ms every ``frame_shift`` ms (``snip_edges``: only whole frames), add
dither, remove the frame's DC offset, pre-emphasise (``x[i] -= c * x[i-1]``, the first sample against
itself), multiply by the window (``povey`` = Hann^0.85, ``hanning``, ``hamming``, ``blackman``,
``rectangular``), zero-pad to a power of two, power spectrum, triangular mel filters on Kaldi's mel scale
``1127 ln(1 + f/700)`` between ``low_freq`` and ``high_freq`` (<= 0: relative to Nyquist), and
``log(max(energy, float32 eps))``.

Output ``[frames, num_mel_bins]``: time first, as Kaldi and the papers' ``.npy`` files store it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = torch.finfo(torch.float32).eps

#: normalisation of the OGM-GE Kinetics-Sounds ``process_audio.py`` (AST-style statistics)
KS_FBANK_MEAN = -4.503877
KS_FBANK_STD = 5.141276


def kaldi_mel_scale(freq):
    return 1127.0 * (torch.log1p(freq / 700.0) if isinstance(freq, Tensor) else math.log1p(freq / 700.0))


def kaldi_window(kind: str, n: int, blackman_coeff: float = 0.42, dtype=torch.float32) -> Tensor:
    if kind == "hanning":
        return torch.hann_window(n, periodic=False, dtype=dtype)
    if kind == "hamming":
        return torch.hamming_window(n, periodic=False, alpha=0.54, beta=0.46, dtype=dtype)
    if kind == "povey":
        return torch.hann_window(n, periodic=False, dtype=dtype).pow(0.85)
    if kind == "rectangular":
        return torch.ones(n, dtype=dtype)
    if kind == "blackman":
        a = 2 * math.pi / (n - 1)
        k = torch.arange(n, dtype=dtype)
        return blackman_coeff - 0.5 * torch.cos(a * k) + (0.5 - blackman_coeff) * torch.cos(2 * a * k)
    raise ValueError(f"window_type={kind!r} must be one of povey, hanning, hamming, blackman, rectangular")


def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float,
                    high_freq: float) -> Tensor:
    """Triangular filters ``[num_bins, padded_window // 2 + 1]`` (the Nyquist column is zero, as in Kaldi)."""
    n_fft_bins = padded_window // 2
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(f"bad mel range: low_freq={low_freq}, high_freq={high_freq}, nyquist={nyquist}")
    mel_low, mel_high = kaldi_mel_scale(low_freq), kaldi_mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=torch.float64).unsqueeze(1)
    left = mel_low + b * delta
    center = mel_low + (b + 1) * delta
    right = mel_low + (b + 2) * delta
    mel = kaldi_mel_scale(sample_rate / padded_window * torch.arange(n_fft_bins, dtype=torch.float64)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.cat([banks, banks.new_zeros(num_bins, 1)], dim=1)


def kaldi_fbank(waveform: Tensor, sample_rate: float = 16000.0, num_mel_bins: int = 23,
                frame_length: float = 25.0, frame_shift: float = 10.0, window_type: str = "povey",
                dither: float = 0.0, preemphasis: float = 0.97, remove_dc_offset: bool = True,
                round_to_power_of_two: bool = True, low_freq: float = 20.0, high_freq: float = 0.0,
                use_power: bool = True, use_log_fbank: bool = True, snip_edges: bool = True,
                blackman_coeff: float = 0.42) -> Tensor:
    """Kaldi fbank of a mono waveform ``[time]`` (or ``[1, time]``); returns ``[frames, num_mel_bins]``.

    Defaults are torchaudio's. ``dither`` > 0 adds Gaussian noise from torch's global generator. Without
    ``snip_edges`` the signal is reflected at the ends so that there are ``round(time / shift)`` frames.
    """
    x = torch.as_tensor(waveform)
    if x.dim() == 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 1:
        raise ValueError(f"kaldi_fbank expects a mono waveform [time], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    win = int(sample_rate * frame_length * 0.001)
    shift = int(sample_rate * frame_shift * 0.001)
    if win < 2 or shift < 1:
        raise ValueError(f"frame_length/frame_shift too small for sample_rate {sample_rate}")
    padded = 1 << (win - 1).bit_length() if round_to_power_of_two else win
    n = x.shape[0]
    if snip_edges:
        if n < win:
            return x.new_zeros(0, num_mel_bins)
        frames = x.unfold(0, win, shift)
    else:
        m = (n + shift // 2) // shift
        pad_left = win // 2 - shift // 2
        total = (m - 1) * shift + win
        pad_right = max(0, total - pad_left - n)
        xl = x[:pad_left].flip(0) if pad_left > 0 else x[:0]
        xr = x[-pad_right:].flip(0) if pad_right > 0 else x[:0]
        frames = torch.cat([xl, x, xr])[: total].unfold(0, win, shift)
    frames = frames.clone()
    if dither != 0.0:
        frames = frames + dither * torch.randn_like(frames)
    if remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    if preemphasis != 0.0:
        prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = frames - preemphasis * prev
    frames = frames * kaldi_window(window_type, win, blackman_coeff, frames.dtype)
    if padded > win:
        frames = torch.nn.functional.pad(frames, (0, padded - win))
    spec = torch.fft.rfft(frames).abs()
    if use_power:
        spec = spec.pow(2)
    banks = kaldi_mel_banks(num_mel_bins, padded, sample_rate, low_freq, high_freq).to(spec.dtype)
    mel = spec @ banks.T
    if use_log_fbank:
        mel = torch.clamp(mel, min=EPS).log()
    return mel


def ks_fbank(waveform: Tensor, sample_rate: float, target_frames: int = 1024, mean: float = KS_FBANK_MEAN,
             std: float = KS_FBANK_STD) -> Tensor:
    """The OGM-GE Kinetics-Sounds audio recipe (``data/KineticSound/process_audio.py``), ``[1024, 128]``.

    Waveform minus its mean; Kaldi fbank with a Hanning window, 128 mel bins, 10 ms shift, no dither, no
    energy; zero-padded or cut to ``target_frames`` frames; ``(fbank - mean) / (2 * std)``.
    """
    x = torch.as_tensor(waveform).float()
    if x.dim() == 2:
        x = x.mean(0)
    fb = kaldi_fbank(x - x.mean(), sample_rate, num_mel_bins=128, window_type="hanning", dither=0.0,
                     frame_shift=10.0)
    n = fb.shape[0]
    if n < target_frames:
        fb = torch.cat([fb, fb.new_zeros(target_frames - n, fb.shape[1])])
    else:
        fb = fb[:target_frames]
    return (fb - mean) / (std * 2)


__all__ = ["kaldi_fbank", "kaldi_mel_banks", "kaldi_mel_scale", "kaldi_window", "ks_fbank", "KS_FBANK_MEAN",
           "KS_FBANK_STD"]
