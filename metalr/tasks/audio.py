"""Speech data: decoding with soundfile, log-mel features with torch, characters for CTC.

torchaudio is deliberately not used: it pins an old torch here.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch

# CTC label 0 is the blank; characters are 1..len(ALPHABET).
ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"
_CHAR_ID = {c: i + 1 for i, c in enumerate(ALPHABET)}


def decode_audio(item: dict | str, sample_rate: int) -> np.ndarray:
    """A mono float32 waveform at ``sample_rate`` from a file path or an ``Audio(decode=False)`` value."""
    # Lazy: only audio files need a decoder and a resampler.
    import soundfile
    from scipy.signal import resample_poly

    if isinstance(item, str):
        item = {"path": item}
    source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
    wave, rate = soundfile.read(source, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != sample_rate:
        g = math.gcd(rate, sample_rate)
        wave = resample_poly(wave, sample_rate // g, rate // g).astype(np.float32)
    return wave


@cache
def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters, shape (n_fft // 2 + 1, n_mels)."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(0.0), to_mel(sample_rate / 2), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - freqs[None]) / np.maximum(upper - centre, 1e-9)
    return torch.as_tensor(np.maximum(0.0, np.minimum(rising, falling)).T, dtype=torch.float32)


def log_mel(wave: np.ndarray, sample_rate: int, n_mels: int) -> np.ndarray:
    """(frames, n_mels) log-mel energies: 25 ms windows every 10 ms."""
    n_fft = 2 ** math.ceil(math.log2(0.025 * sample_rate))
    hop = int(0.010 * sample_rate)
    signal = torch.as_tensor(wave, dtype=torch.float32)
    if len(signal) < n_fft:
        signal = torch.nn.functional.pad(signal, (0, n_fft - len(signal)))
    spec = torch.stft(signal, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs() ** 2
    mel = spec.T @ mel_filterbank(n_fft, n_mels, sample_rate)
    return torch.log(mel + 1e-6).numpy()


def pad_stack(items: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad along the first axis to the longest item; return (stacked, lengths)."""
    lengths = np.array([len(x) for x in items], dtype=np.int64)
    out = np.zeros((len(items), int(lengths.max()), *items[0].shape[1:]), dtype=np.float32)
    for i, x in enumerate(items):
        out[i, : len(x)] = x
    return out, lengths


def encode_transcripts(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Character ids (lower-cased; characters outside the alphabet dropped), zero-padded, and lengths."""
    ids = [[_CHAR_ID[c] for c in " ".join(str(t).lower().split()) if c in _CHAR_ID] for t in texts]
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    out = np.zeros((len(ids), max(1, int(lengths.max()))), dtype=np.int64)
    for i, x in enumerate(ids):
        out[i, : len(x)] = x
    return out, lengths


def decode_ids(ids: Sequence[int]) -> str:
    return "".join(ALPHABET[i - 1] for i in ids if 0 < i <= len(ALPHABET))


def greedy_ctc(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks."""
    best = log_probs.argmax(-1).cpu().numpy()
    out = []
    for row, n in zip(best, lengths.cpu().numpy(), strict=True):
        row = row[:n]
        keep = row[np.r_[True, row[1:] != row[:-1]]]
        out.append(decode_ids(keep.tolist()))
    return out
