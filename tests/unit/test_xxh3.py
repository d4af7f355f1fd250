"""The vectorised XXH3-64 must equal ``xxhash.xxh3_64_intdigest`` bit for bit, on every path."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_parity.parity.xxh3 import MAX_VECTORISED_LEN, xxh3_64_fixed, xxh3_64_ragged

# Wrapping uint64 arithmetic is intended: any numpy warning (overflow included) is a failure.
pytestmark = pytest.mark.filterwarnings("error")

# Every length where XXH3 switches path, and either side of it.
BOUNDARIES = [0, 1, 3, 4, 8, 9, 16, 17, 32, 33, 64, 65, 96, 97, 128, 129, 240, 241]
SPECIAL_SEEDS = [0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]

u64s = st.integers(0, 2**64 - 1)
# Scalar seeds, including ones outside [0, 2**64) that xxhash reduces mod 2**64.
scalar_seeds = st.sampled_from(SPECIAL_SEEDS) | u64s | st.integers(-(2**70), 2**70)


def expected(blobs: list[bytes], seeds: int | list[int]) -> list[int]:
    if isinstance(seeds, int):
        return [xxhash.xxh3_64_intdigest(b, seeds) for b in blobs]
    return [xxhash.xxh3_64_intdigest(b, s) for b, s in zip(blobs, seeds, strict=True)]


def as_rows(blobs: list[bytes], length: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), length)


def as_ragged(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate(([0], np.cumsum([len(b) for b in blobs], dtype=np.int64)))
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


@st.composite
def fixed_batches(draw: st.DrawFn, length: int) -> tuple[list[bytes], int | list[int]]:
    blobs = draw(st.lists(st.binary(min_size=length, max_size=length), min_size=1, max_size=6))
    per_row = draw(st.booleans())
    if per_row:
        seeds: int | list[int] = draw(
            st.lists(
                st.sampled_from(SPECIAL_SEEDS) | u64s, min_size=len(blobs), max_size=len(blobs)
            )
        )
    else:
        seeds = draw(scalar_seeds)
    return blobs, seeds


def hash_fixed(blobs: list[bytes], length: int, seeds: int | list[int]) -> list[int]:
    seed = seeds if isinstance(seeds, int) else np.array(seeds, dtype=np.uint64)
    out = xxh3_64_fixed(as_rows(blobs, length), seed)
    assert out.dtype == np.uint64 and out.shape == (len(blobs),)
    return [int(h) for h in out]


@pytest.mark.parametrize("length", range(MAX_VECTORISED_LEN + 2))
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_fixed_every_length(length: int, data: st.DataObject) -> None:
    blobs, seeds = data.draw(fixed_batches(length))
    assert hash_fixed(blobs, length, seeds) == expected(blobs, seeds)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), length=st.sampled_from(BOUNDARIES))
def test_fixed_path_boundaries(data: st.DataObject, length: int) -> None:
    blobs, seeds = data.draw(fixed_batches(length))
    assert hash_fixed(blobs, length, seeds) == expected(blobs, seeds)


@pytest.mark.parametrize("seed", [0, 2**64 - 1])
@pytest.mark.parametrize("fill", [0x00, 0xFF])
@pytest.mark.parametrize("length", BOUNDARIES)
def test_fixed_extreme_bytes(length: int, fill: int, seed: int) -> None:
    """All-zero and all-ones inputs: the carries of the 128-bit multiply at their extremes."""
    blobs = [bytes([fill]) * length] * 3
    assert hash_fixed(blobs, length, seed) == expected(blobs, seed)


@pytest.mark.parametrize("length", [0, 2, 7, 9, 16, 33, 64, 100, 129, 200, 240])
def test_fixed_many_rows_spans_blocks(length: int) -> None:
    """Enough rows that the input is processed in several blocks, with per-row seeds."""
    rng = np.random.default_rng(length)
    n = 70_000 if length <= 16 else 9_000
    rows = rng.integers(0, 256, (n, length), dtype=np.uint8)
    seeds = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    blobs = [r.tobytes() for r in rows]
    assert [int(h) for h in xxh3_64_fixed(rows, seeds)] == expected(blobs, seeds.tolist())
    assert [int(h) for h in xxh3_64_fixed(rows, 12345)] == expected(blobs, 12345)


@pytest.mark.parametrize("length", [3, 8, 13, 47, 130])
def test_fixed_non_contiguous_rows(length: int) -> None:
    rng = np.random.default_rng(7)
    wide = rng.integers(0, 256, (50, length + 5), dtype=np.uint8)
    rows = wide[::2, 3 : 3 + length]
    assert not rows.flags.c_contiguous
    blobs = [r.tobytes() for r in rows]
    assert [int(h) for h in xxh3_64_fixed(rows, 99)] == expected(blobs, 99)
    fortran = np.asfortranarray(rows)
    assert [int(h) for h in xxh3_64_fixed(fortran, 99)] == expected(blobs, 99)


def test_seed_reduction_matches_xxhash() -> None:
    rows = as_rows([b"0123456789abcdef", b"fedcba9876543210"], 16)
    blobs = [r.tobytes() for r in rows]
    for seed in (-1, -(2**64), 2**64, 2**64 + 5, 2**100 + 3, -(2**90) - 7, True):
        assert [int(h) for h in xxh3_64_fixed(rows, seed)] == expected(blobs, int(seed))
    assert [int(h) for h in xxh3_64_fixed(rows, np.uint64(2**64 - 1))] == expected(blobs, 2**64 - 1)
    assert [int(h) for h in xxh3_64_fixed(rows, np.int64(-3))] == expected(blobs, -3)
    # Signed per-row seeds wrap two's-complement, i.e. mod 2**64.
    signed = np.array([-1, -(2**63)], dtype=np.int64)
    assert [int(h) for h in xxh3_64_fixed(rows, signed)] == expected(blobs, [-1, -(2**63)])


@st.composite
def ragged_batches(draw: st.DrawFn) -> tuple[list[bytes], int | list[int]]:
    sizes = st.integers(0, 300) | st.sampled_from(BOUNDARIES + [255, 256, 300])
    blobs = draw(st.lists(sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n)), max_size=12))
    if draw(st.booleans()):
        seeds: int | list[int] = draw(st.lists(u64s, min_size=len(blobs), max_size=len(blobs)))
    else:
        seeds = draw(scalar_seeds)
    return blobs, seeds


@settings(max_examples=300, deadline=None)
@given(batch=ragged_batches())
def test_ragged_matches_xxhash_in_order(batch: tuple[list[bytes], int | list[int]]) -> None:
    blobs, seeds = batch
    data, offsets = as_ragged(blobs)
    seed = seeds if isinstance(seeds, int) else np.array(seeds, dtype=np.uint64)
    out = xxh3_64_ragged(data, offsets, seed)
    assert out.dtype == np.uint64 and out.shape == (len(blobs),)
    assert [int(h) for h in out] == expected(blobs, seeds)


def test_ragged_large_mixed_lengths_with_offset_start() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    lengths = rng.integers(0, 320, n)
    lengths[::97] = 0
    prefix = 11  # offsets need not start at 0, nor end at len(data)
    offsets = prefix + np.concatenate(([0], np.cumsum(lengths)))
    data = rng.integers(0, 256, int(offsets[-1]) + 5, dtype=np.uint8)
    blobs = [data[offsets[i] : offsets[i + 1]].tobytes() for i in range(n)]
    seeds = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    assert [int(h) for h in xxh3_64_ragged(data, offsets, seeds)] == expected(blobs, seeds.tolist())
    assert [int(h) for h in xxh3_64_ragged(data, offsets, 2**64 - 1)] == expected(blobs, 2**64 - 1)


@pytest.mark.parametrize("length", [0, 5, 64, 241, 400])
def test_ragged_uniform_lengths(length: int) -> None:
    rng = np.random.default_rng(length)
    blobs = [rng.bytes(length) for _ in range(40)]
    data, offsets = as_ragged(blobs)
    assert [int(h) for h in xxh3_64_ragged(data, offsets, 5)] == expected(blobs, 5)
    assert [int(h) for h in xxh3_64_ragged(data, offsets.astype(np.uint32))] == expected(blobs, 0)


def test_empty_inputs_return_empty_uint64() -> None:
    for length in (0, 3, 9, 64, 200, 241):
        out = xxh3_64_fixed(np.empty((0, length), dtype=np.uint8))
        assert out.dtype == np.uint64 and out.shape == (0,)
        out = xxh3_64_fixed(np.empty((0, length), dtype=np.uint8), np.empty(0, dtype=np.uint64))
        assert out.dtype == np.uint64 and out.shape == (0,)
    empty = np.empty(0, dtype=np.uint8)
    for offsets in (np.array([0]), np.array([], dtype=np.int64)):
        out = xxh3_64_ragged(empty, offsets)
        assert out.dtype == np.uint64 and out.shape == (0,)
    out = xxh3_64_ragged(empty, np.array([0]), np.empty(0, dtype=np.uint64))
    assert out.dtype == np.uint64 and out.shape == (0,)


def test_empty_strings_hash_like_xxhash() -> None:
    out = xxh3_64_fixed(np.empty((3, 0), dtype=np.uint8), np.array([0, 1, 2**64 - 1], np.uint64))
    assert [int(h) for h in out] == expected([b""] * 3, [0, 1, 2**64 - 1])


def test_rejects_bad_arguments() -> None:
    rows = np.zeros((2, 4), dtype=np.uint8)
    with pytest.raises(ValueError):
        xxh3_64_fixed(np.zeros(4, dtype=np.uint8))
    with pytest.raises(TypeError):
        xxh3_64_fixed(rows.astype(np.int64))
    with pytest.raises(ValueError):
        xxh3_64_fixed(rows, np.zeros(3, dtype=np.uint64))
    with pytest.raises(TypeError):
        xxh3_64_fixed(rows, np.zeros(2, dtype=np.float64))
    data = np.zeros(8, dtype=np.uint8)
    with pytest.raises(ValueError):
        xxh3_64_ragged(data, np.array([0, 4, 2]))
    with pytest.raises(ValueError):
        xxh3_64_ragged(data, np.array([0, 9]))
    with pytest.raises(TypeError):
        xxh3_64_ragged(data.astype(np.int8), np.array([0, 8]))
