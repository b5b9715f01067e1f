#!/usr/bin/env python
"""Rebuild ``src/mmbalance/data/embedded/files/av_digits.npz`` (the AV-digits dataset) bit for bit.

The AV-MNIST construction on data that can be had offline:

* images: the 1,797 8x8 handwritten digits of ``sklearn.datasets.load_digits`` (UCI optical digits,
  Alpaydin & Kaynak), pixel values 0..16 scaled to [0, 1];
* speech: one spoken digit ("zero" .. "nine") per image, of the image's class, synthesised offline with
  espeak-ng (``espeakng-loader`` wheel: libespeak-ng 1.52 + voice data, GPL-3; used only here, nothing of it is
  shipped) with a seeded random English accent, voice variant, speaking rate, pitch and pitch range per clip;
  resampled to 16 kHz, silence-trimmed, RMS-normalised, placed in a fixed 0.8 s window and turned into a
  log mel spectrogram by :func:`mmbalance.data.audio.log_mel` (32 mels x 33 frames).

Two presets share images, clips and pairing:

* ``clean``: images as is; clips near the window centre (shift <= 50 ms) over a -40 dB white dither floor;
* ``hard``: images + Gaussian pixel noise (sigma 0.4, clipped to [0, 1]); clips at a uniformly random position
  in the window plus white noise at 0 dB SNR (relative to the clip's speech power).

Audio features of each preset are standardised with one global mean/std (stored) and saved as float16.
Everything is seeded; espeak-ng keeps global synthesis state between calls, so each clip is synthesised in
a freshly forked process to make it depend only on its own parameters (Linux/macOS: needs ``fork``).

Requirements (rebuilding only): ``.venv/bin/pip install espeakng-loader`` plus the library's own
dependencies (torch, numpy, scipy, scikit-learn).

Usage:
    python scripts/build_av_digits.py            # rebuild the shipped file and update files/SHA256SUMS
    python scripts/build_av_digits.py --check    # rebuild into a temp dir; exit 1 unless it matches SHA256SUMS
    python scripts/build_av_digits.py --out DIR  # write DIR/av_digits.npz only
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmbalance.data.embedded import (  # noqa: E402
    AV_DIGITS_FILE,
    rebuild,
    write_npz_deterministic,
)

# ------------------------------------------------------------------------------------------- configuration
SEED = 20250101
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# espeak-ng English accents (lang/gmw/en*), en-Shaw (Shavian script) left out.
ACCENTS = ["en", "en-US", "en-US-nyc", "en-GB-scotland", "en-GB-x-gbclan", "en-GB-x-gbcwmd", "en-GB-x-rp", "en-029"]
# espeak-ng voice variants (voices/!v) that sound like a person; robots, whisper, croak, echo effects left out.
# "" = the accent's default voice.
VARIANTS = [
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky",
    "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "Storm", "adam", "anika", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "edward2", "grandma", "grandpa", "gustave",
    "ian", "iven", "iven2", "iven3", "iven4", "john", "linda", "marcelo", "max", "michel", "miguel", "mike2",
    "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2",
    "steph3", "travis", "victor", "zac",
]
RATE_WPM = (120, 220)  # espeak default 175
PITCH = (25, 75)  # espeak default 50 (0..100)
PITCH_RANGE = (20, 80)  # espeak default 50 (0 = monotone)

SAMPLE_RATE = 16000
DURATION_S = 0.8
TRIM_THRESHOLD = 0.02  # of the clip's peak amplitude
SPEECH_RMS = 0.1  # RMS of the trimmed speech after normalisation
DITHER_DB = -40.0  # white dither floor, relative to the speech power (both presets)
CLEAN_MAX_SHIFT_S = 0.05  # clean: clip centred in the window, shifted by at most this
HARD_SNR_DB = 0.0  # hard: white noise at this SNR; clip at a uniformly random position
HARD_IMAGE_SIGMA = 0.4  # hard: Gaussian pixel noise (pixels in [0, 1]), then clipped to [0, 1]
N_FFT, HOP_LENGTH, N_MELS = 512, 400, 32  # 32 ms window, 25 ms hop -> 33 frames for 0.8 s

ESPEAK_SAMPLE_RATE = 22050

# ------------------------------------------------------------------------------------------- synthesis
_ESPEAK = None
_CHUNKS: list[np.ndarray] = []
_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@_CALLBACK_TYPE
def _collect(wav, n_samples, events):  # espeak-ng synth callback: append the int16 chunk, continue
    if wav and n_samples > 0:
        _CHUNKS.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
    return 0


def _init_espeak():
    """Load libespeak-ng from the espeakng-loader wheel and initialise synchronous synthesis."""
    global _ESPEAK
    try:
        import espeakng_loader
    except ImportError:
        sys.exit("espeakng-loader is not installed: run `.venv/bin/pip install espeakng-loader` (rebuild only)")
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    sample_rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # 2 = SYNCHRONOUS
    if sample_rate != ESPEAK_SAMPLE_RATE:
        sys.exit(f"espeak-ng initialisation failed or unexpected sample rate ({sample_rate})")
    lib.espeak_SetSynthCallback(_collect)
    _ESPEAK = lib


def _synthesize_one(job: tuple[str, str, int, int, int, int]) -> np.ndarray:
    """Synthesise one word -> int16 samples at 22,050 Hz. Runs in a freshly forked worker."""
    text, voice, rate, pitch, pitch_range, seed = job
    lib = _ESPEAK
    _CHUNKS.clear()
    lib.espeak_ng_SetRandSeed(seed)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"espeak-ng: unknown voice {voice!r}")
    lib.espeak_SetParameter(1, rate, 0)  # espeakRATE
    lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH
    lib.espeak_SetParameter(4, pitch_range, 0)  # espeakRANGE
    data = text.encode() + b"\0"
    if lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None) != 0 or lib.espeak_Synchronize() != 0:
        raise RuntimeError(f"espeak-ng failed on {job}")
    return np.concatenate(_CHUNKS)


def synthesize(jobs: list[tuple], processes: int = 2) -> list[np.ndarray]:
    """Synthesise every job in its own forked process (espeak-ng's global state never carries over)."""
    _init_espeak()
    with mp.get_context("fork").Pool(processes, maxtasksperchild=1) as pool:
        return pool.map(_synthesize_one, jobs, chunksize=1)


# ------------------------------------------------------------------------------------------- construction
def voice_parameters(labels: np.ndarray, rng: np.random.Generator) -> list[tuple]:
    """One seeded random (word, voice, rate, pitch, pitch range, synth seed) per sample."""
    n = len(labels)
    accents = rng.integers(len(ACCENTS), size=n)
    variants = rng.integers(len(VARIANTS), size=n)
    rates = rng.integers(RATE_WPM[0], RATE_WPM[1] + 1, size=n)
    pitches = rng.integers(PITCH[0], PITCH[1] + 1, size=n)
    ranges = rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1, size=n)
    seeds = rng.integers(1, 2**31 - 1, size=n)
    jobs = []
    for i in range(n):
        variant = VARIANTS[variants[i]]
        voice = ACCENTS[accents[i]] + (f"+{variant}" if variant else "")
        jobs.append((WORDS[labels[i]], voice, int(rates[i]), int(pitches[i]), int(ranges[i]), int(seeds[i])))
    return jobs


def prepare_clip(samples: np.ndarray) -> np.ndarray:
    """int16 @ 22,050 Hz -> float64 @ 16 kHz, silence-trimmed, RMS = SPEECH_RMS."""
    from scipy.signal import resample_poly

    x = resample_poly(samples.astype(np.float64) / 32768.0, SAMPLE_RATE // 50, ESPEAK_SAMPLE_RATE // 50)
    loud = np.flatnonzero(np.abs(x) > TRIM_THRESHOLD * np.abs(x).max())
    x = x[loud[0]: loud[-1] + 1]
    return x * (SPEECH_RMS / np.sqrt(np.mean(x**2)))


def place(clip: np.ndarray, n_window: int, max_shift: int | None, rng: np.random.Generator) -> np.ndarray:
    """Put ``clip`` into a zero window: centred +- ``max_shift`` samples, or anywhere if ``max_shift`` is None.

    Clips longer than the window are cropped at a random offset.
    """
    window = np.zeros(n_window)
    if len(clip) >= n_window:
        start = int(rng.integers(0, len(clip) - n_window + 1))
        window[:] = clip[start: start + n_window]
        return window
    slack = n_window - len(clip)
    if max_shift is None:
        offset = int(rng.integers(0, slack + 1))
    else:
        shift = min(max_shift, slack // 2)
        offset = slack // 2 + int(rng.integers(-shift, shift + 1))
    window[offset: offset + len(clip)] = clip
    return window


def build_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    images = (digits.images.astype(np.float64) / 16.0)[:, None, :, :]  # [N, 1, 8, 8] in [0, 1]
    n = len(labels)

    seq_voice, seq_clean, seq_hard, seq_image = np.random.SeedSequence(SEED).spawn(4)
    jobs = voice_parameters(labels, np.random.default_rng(seq_voice))
    raw = synthesize(jobs)  # before torch is imported: forking stays cheap and safe
    clips = [prepare_clip(r) for r in raw]

    import torch

    from mmbalance.data.audio import log_mel

    n_window = int(round(DURATION_S * SAMPLE_RATE))
    rng_clean, rng_hard = np.random.default_rng(seq_clean), np.random.default_rng(seq_hard)
    dither_std = SPEECH_RMS * 10 ** (DITHER_DB / 20)
    noise_std = SPEECH_RMS * 10 ** (-HARD_SNR_DB / 20)
    waves = {"clean": np.empty((n, n_window)), "hard": np.empty((n, n_window))}
    for i, clip in enumerate(clips):
        waves["clean"][i] = place(clip, n_window, int(CLEAN_MAX_SHIFT_S * SAMPLE_RATE), rng_clean)
        waves["clean"][i] += rng_clean.normal(0.0, dither_std, n_window)
        waves["hard"][i] = place(clip, n_window, None, rng_hard)
        waves["hard"][i] += rng_hard.normal(0.0, np.hypot(noise_std, dither_std), n_window)

    arrays: dict[str, np.ndarray] = {"labels": labels}
    rng_image = np.random.default_rng(seq_image)
    arrays["image_clean"] = images.astype(np.float16)
    noisy = np.clip(images + rng_image.normal(0.0, HARD_IMAGE_SIGMA, images.shape), 0.0, 1.0)
    arrays["image_hard"] = noisy.astype(np.float16)
    for preset, wave in waves.items():
        with torch.no_grad():
            feats = log_mel(torch.from_numpy(wave), SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS)
        feats = feats.numpy()[:, None]  # [N, 1, n_mels, frames], float64
        mean, std = feats.mean(), feats.std()
        arrays[f"audio_{preset}"] = ((feats - mean) / std).astype(np.float16)
        arrays[f"audio_{preset}_mean"] = np.float64(mean)
        arrays[f"audio_{preset}_std"] = np.float64(std)
    arrays["voice"] = np.array([job[1] for job in jobs])
    arrays["rate_wpm"] = np.array([job[2] for job in jobs], dtype=np.int16)
    arrays["pitch"] = np.array([job[3] for job in jobs], dtype=np.int16)
    arrays["build_config"] = np.array(json.dumps(build_config(), sort_keys=True))
    return arrays


def build_config() -> dict:
    return {
        "seed": SEED, "words": WORDS, "accents": ACCENTS, "variants": VARIANTS, "rate_wpm": RATE_WPM,
        "pitch": PITCH, "pitch_range": PITCH_RANGE, "sample_rate": SAMPLE_RATE, "duration_s": DURATION_S,
        "trim_threshold": TRIM_THRESHOLD, "speech_rms": SPEECH_RMS, "dither_db": DITHER_DB,
        "clean_max_shift_s": CLEAN_MAX_SHIFT_S, "hard_snr_db": HARD_SNR_DB, "hard_image_sigma": HARD_IMAGE_SIGMA,
        "n_fft": N_FFT, "hop_length": HOP_LENGTH, "n_mels": N_MELS, "synthesizer": "libespeak-ng 1.52 (espeakng-loader)",
    }


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / AV_DIGITS_FILE
    write_npz_deterministic(out, build_arrays())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare with SHA256SUMS")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the package's files/)")
    args = parser.parse_args(argv)

    return rebuild(AV_DIGITS_FILE, build, check=args.check, out=args.out)


if __name__ == "__main__":
    sys.exit(main())
