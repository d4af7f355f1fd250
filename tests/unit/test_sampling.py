"""Deterministic entity sampling (feast_parity.parity.sampling).

Whether an entity row is sampled depends only on its canonical key bytes and the seed:
``xxh3_64(canonical_entity_key, seed) < rate * 2**64``. The references below are written
independently of the module (exact rational arithmetic, a regex for integer spellings), and
the distribution is checked against binomial bounds.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_parity.parity.sampling import (
    SAMPLE_SPACE,
    EntityKeyError,
    Sampler,
    canonical_entity_key,
    sample_threshold,
    should_sample,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
N_ENTITIES = 100_000

names = st.text(min_size=1, max_size=8)
int_values = st.integers(min_value=-(2**70), max_value=2**70)
int_key_dicts = st.dictionaries(names, int_values, min_size=1, max_size=5)
seeds = st.integers(min_value=0, max_value=2**64 - 1)
slow = settings(deadline=None)


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def _reference_sampled(key: bytes, seed: int, rate: float) -> bool:
    """The definition, in exact rational arithmetic: digest < rate * 2**64."""
    return Fraction(xxhash.xxh3_64_intdigest(key, seed=seed)) < Fraction(rate) * 2**64


def _semantic(value: object) -> tuple[str, object]:
    """What a key value means, decided independently of the module under test."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, str):
        if re.fullmatch(r"-?[0-9]+", value) and str(int(value)) == value:
            return ("int", int(value))
        return ("str", value)
    assert isinstance(value, bytes)
    return ("bytes", value)


# --- canonical bytes ----------------------------------------------------------------------


def test_canonical_layout_matches_the_documented_format() -> None:
    # Pinned from the module docstring: stored samples must stay reproducible across releases.
    expected = (
        _u32(1) + b"a" + b"s" + _u32(3) + "xé".encode()
        + _u32(7) + b"user_id" + b"i" + _u32(2) + b"-7"
    )  # fmt: skip
    assert canonical_entity_key({"user_id": -7, "a": "xé"}) == expected
    assert canonical_entity_key({"k": b"\x00"}) == _u32(1) + b"k" + b"b" + _u32(1) + b"\x00"
    assert canonical_entity_key({}) == b""


@given(int_key_dicts)
def test_key_order_and_int_spelling_do_not_matter(keys: dict[str, int]) -> None:
    reversed_order = dict(reversed(list(keys.items())))
    as_strings = {name: str(value) for name, value in keys.items()}
    mixed = {name: (str(v) if i % 2 else v) for i, (name, v) in enumerate(keys.items())}
    expected = canonical_entity_key(keys)
    for variant in (reversed_order, as_strings, mixed):
        assert canonical_entity_key(variant) == expected
    sampler = Sampler(0.5, seed=11)
    decisions = {sampler.decide(v) for v in (keys, reversed_order, as_strings, mixed)}
    assert len(decisions) == 1


@given(st.data())
def test_numpy_integer_widths_equal_python_int(data: st.DataObject) -> None:
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32):
        info = np.iinfo(dtype)
        value = data.draw(st.integers(int(info.min), int(info.max)), label=dtype.__name__)
        assert canonical_entity_key({"id": dtype(value)}) == canonical_entity_key({"id": value})
    big = data.draw(st.integers(0, 2**64 - 1), label="uint64")
    assert canonical_entity_key({"id": np.uint64(big)}) == canonical_entity_key({"id": big})


@pytest.mark.parametrize(
    "spelling", ["042", " 42", "42 ", "+42", "4.0", "42.0", "4_2", "0x2a", "٤٢", "42\n"]
)
def test_non_canonical_int_spellings_stay_strings(spelling: str) -> None:
    assert canonical_entity_key({"id": spelling}) != canonical_entity_key({"id": 42})
    assert canonical_entity_key({"id": spelling}) == (
        _u32(2) + b"id" + b"s" + _u32(len(spelling.encode())) + spelling.encode()
    )


@pytest.mark.parametrize(("text", "number"), [("42", 42), ("-7", -7), ("0", 0), ("10", 10)])
def test_canonical_int_spellings_equal_ints(text: str, number: int) -> None:
    assert canonical_entity_key({"id": text}) == canonical_entity_key({"id": number})


def test_minus_zero_string_is_not_zero() -> None:
    assert canonical_entity_key({"id": "-0"}) != canonical_entity_key({"id": 0})


def test_length_prefixes_prevent_boundary_collisions() -> None:
    assert canonical_entity_key({"k1": "ab", "k2": "c"}) != canonical_entity_key(
        {"k1": "a", "k2": "bc"}
    )
    assert canonical_entity_key({"ab": "c"}) != canonical_entity_key({"a": "bc"})
    assert canonical_entity_key({"a": 12, "b": 3}) != canonical_entity_key({"a": 1, "b": 23})


def test_bool_is_its_own_kind() -> None:
    assert canonical_entity_key({"flag": True}) != canonical_entity_key({"flag": 1})
    assert canonical_entity_key({"flag": False}) != canonical_entity_key({"flag": 0})
    assert canonical_entity_key({"flag": np.bool_(True)}) == canonical_entity_key({"flag": True})


def test_str_and_bytes_differ() -> None:
    assert canonical_entity_key({"k": "abc"}) != canonical_entity_key({"k": b"abc"})
    assert canonical_entity_key({"k": bytearray(b"abc")}) == canonical_entity_key({"k": b"abc"})


key_values = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from(["0", "1", "-1", "01", "a", "ab", "b", "", "1a"]),
    st.text(max_size=4),
    st.binary(max_size=3),
    st.booleans(),
)
key_dicts = st.dictionaries(st.sampled_from(["a", "ab", "b", "bc"]), key_values, max_size=3)


@given(key_dicts, key_dicts)
def test_canonical_bytes_equal_exactly_when_keys_mean_the_same(
    left: dict[str, object], right: dict[str, object]
) -> None:
    same = {k: _semantic(v) for k, v in left.items()} == {k: _semantic(v) for k, v in right.items()}
    assert (canonical_entity_key(left) == canonical_entity_key(right)) == same


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(1.0, "float"), (1.5, "float"), (np.float64(3.0), "float64"), (None, "NoneType")],
)
def test_unsupported_values_raise_naming_key_and_type(value: object, type_name: str) -> None:
    with pytest.raises(EntityKeyError, match=rf"'video_id'.*\b{type_name}\b"):
        canonical_entity_key({"user_id": 1, "video_id": value})
    with pytest.raises(EntityKeyError, match=rf"'video_id'.*\b{type_name}\b"):
        Sampler(0.5, 1).decide({"video_id": value})
    assert issubclass(EntityKeyError, ValueError)


def test_non_str_join_key_names_raise() -> None:
    with pytest.raises(EntityKeyError, match="names must be str"):
        canonical_entity_key({1: 2})  # type: ignore[dict-item]


# --- the sampling rule --------------------------------------------------------------------


@given(st.binary(max_size=40), seeds, st.floats(0.0, 1.0))
def test_should_sample_is_exactly_the_documented_comparison(
    key: bytes, seed: int, rate: float
) -> None:
    assert should_sample(key, seed, rate) == _reference_sampled(key, seed, rate)


@given(st.floats(0.0, 1.0))
def test_threshold_is_the_least_integer_not_below_rate_times_space(rate: float) -> None:
    threshold = sample_threshold(rate)
    exact = Fraction(rate) * SAMPLE_SPACE
    assert threshold - 1 < exact <= threshold


def test_tiny_rate_keeps_the_zero_digest() -> None:
    # digest < 2**-6 holds for digest 0 only, so the integer threshold must be 1, not 0.
    assert Sampler(2.0**-70, seed=0).threshold == 1
    assert sample_threshold(0.0) == 0
    assert sample_threshold(1.0) == 2**64


@pytest.mark.parametrize("rate", [-0.1, 1.0000001, math.nan, math.inf, -math.inf])
def test_rate_outside_unit_interval_raises(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        Sampler(rate, seed=1)
    with pytest.raises(ValueError, match="rate"):
        should_sample(b"x", 1, rate)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_outside_u64_raises(seed: int) -> None:
    # xxhash would silently reduce it modulo 2**64, aliasing two "different" seeds.
    with pytest.raises(ValueError, match="seed"):
        Sampler(0.5, seed=seed)


@given(int_key_dicts, seeds, st.floats(0.0, 1.0))
def test_sampler_decide_agrees_with_should_sample(
    keys: dict[str, int], seed: int, rate: float
) -> None:
    assert Sampler(rate, seed).decide(keys) == _reference_sampled(
        canonical_entity_key(keys), seed, rate
    )


# --- column-oriented rows -----------------------------------------------------------------

row_values = st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=6))


@given(
    st.integers(0, 12).flatmap(
        lambda n: st.dictionaries(
            names,
            st.one_of(
                st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n),
                st.lists(st.text(max_size=6), min_size=n, max_size=n),
                st.lists(st.binary(max_size=4), min_size=n, max_size=n),
            ),
            min_size=1,
            max_size=3,
        )
    ),
    seeds,
    st.floats(0.0, 1.0),
)
def test_decide_rows_equals_per_row_decide(
    rows: dict[str, list[object]], seed: int, rate: float
) -> None:
    sampler = Sampler(rate, seed)
    n = len(next(iter(rows.values())))
    per_row = [sampler.decide({k: col[i] for k, col in rows.items()}) for i in range(n)]
    assert sampler.decide_rows(rows) == per_row
    expected = [
        _reference_sampled(canonical_entity_key({k: col[i] for k, col in rows.items()}), seed, rate)
        for i in range(n)
    ]
    assert per_row == expected


@slow
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50), seeds)
def test_numpy_columns_equal_list_columns(ids: list[int], seed: int) -> None:
    sampler = Sampler(0.5, seed)
    expected = sampler.decide_rows({"id": ids})
    assert sampler.decide_rows({"id": np.array(ids, dtype=np.int64)}) == expected
    assert sampler.decide_rows({"id": [np.int64(i) for i in ids]}) == expected
    assert sampler.decide_rows({"id": [str(i) for i in ids]}) == expected


def test_column_mixing_ints_and_numeric_strings_is_one_kind() -> None:
    sampler = Sampler(0.5, 3)
    assert sampler.decide_rows({"id": [1, "2", np.int32(3)]}) == sampler.decide_rows(
        {"id": [1, 2, 3]}
    )
    # A string column is one kind even when some of its ids look numeric.
    assert sampler.decide_rows({"id": ["abc", "42"]}) == [
        sampler.decide({"id": "abc"}),
        sampler.decide({"id": 42}),
    ]


@pytest.mark.parametrize(
    ("column", "kinds"),
    [
        ([1, 2, "abc"], ("int", "str")),
        ([1, 2.0], ("float", "int")),
        ([1.5, 7], ("float", "int")),
        ([1, True], ("bool", "int")),
        (["a", b"a"], ("bytes", "str")),
        ([1, None], ("NoneType", "int")),
    ],
)
def test_column_mixing_kinds_raises_naming_the_column(
    column: list[object], kinds: tuple[str, str]
) -> None:
    with pytest.raises(EntityKeyError, match=r"'video_id'") as info:
        Sampler(0.5, 3).decide_rows({"user_id": [1] * len(column), "video_id": column})
    message = str(info.value)
    assert "mixes value kinds" in message
    for kind in kinds:
        assert re.search(rf"\b{kind}\b", message), message


def test_all_float_column_raises_naming_the_column() -> None:
    with pytest.raises(EntityKeyError, match=r"'score'.*float"):
        Sampler(0.5, 3).decide_rows({"score": np.array([1.0, 2.0])})


def test_columns_of_different_lengths_raise() -> None:
    with pytest.raises(EntityKeyError, match="different lengths"):
        Sampler(0.5, 3).decide_rows({"a": [1, 2], "b": [1]})


def test_string_as_column_raises() -> None:
    with pytest.raises(EntityKeyError, match="'a'"):
        Sampler(0.5, 3).decide_rows({"a": "123"})


def test_no_columns_no_rows() -> None:
    assert Sampler(0.5, 3).decide_rows({}) == []
    assert Sampler(0.5, 3).sample_rows({}) == ([], [])


@given(
    st.integers(0, 12).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n),
            st.lists(st.text(max_size=4), min_size=n, max_size=n),
            st.lists(st.binary(max_size=3), min_size=n, max_size=n),
        )
    ),
    seeds,
    st.sampled_from([0.0, 0.3, 0.7, 1.0]),
)
def test_sample_rows_are_the_sampled_rows_with_their_canonical_keys(
    columns: tuple[list[int], list[str], list[bytes]], seed: int, rate: float
) -> None:
    """What the serving hook uses: the indexes decide_rows marks, and the bytes of
    canonical_entity_key for each of them (so the writer need not encode again)."""
    users, names, blobs = columns
    sampler = Sampler(rate, seed)
    for rows in ({"user_id": users}, {"user_id": users, "name": names, "blob": blobs}):
        chosen, keys = sampler.sample_rows(rows)
        assert chosen == [i for i, hit in enumerate(sampler.decide_rows(rows)) if hit]
        assert keys == [canonical_entity_key({k: c[i] for k, c in rows.items()}) for i in chosen]
    with pytest.raises(EntityKeyError, match="different lengths"):
        sampler.sample_rows({"a": [1, 2], "b": [1]})


def test_value_cache_overflow_keeps_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-column value cache is bounded; a request that overflows it (some values
    cached, some new) still gets every row's key, the same as a fresh sampler's."""
    import feast_parity.parity.sampling as sampling

    monkeypatch.setattr(sampling, "_VALUE_CACHE_MAX", 8)
    warm = Sampler(1.0, 5)
    warm.sample_rows({"user_id": list(range(8))})
    rows = {"user_id": list(range(3, 20)), "name": [str(i) for i in range(17)]}
    assert warm.sample_rows(rows) == Sampler(1.0, 5).sample_rows(rows)
    assert len(warm._values[("user_id", int)]) <= 17


# --- distribution and determinism ---------------------------------------------------------

_CHILD = """
import json, sys
from feast_parity.parity.sampling import Sampler
sampler = Sampler(float(sys.argv[1]), seed=int(sys.argv[2]))
chosen = [i for i, hit in enumerate(sampler.decide_rows({"entity_id": range(N_ENTITIES)})) if hit]
print(json.dumps(chosen))
""".replace("N_ENTITIES", str(N_ENTITIES))


def _sample_in_subprocess(rate: float, seed: int) -> set[int]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, repr(rate), str(seed)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return set(json.loads(out))


def _sample_in_process(rate: float, seed: int) -> set[int]:
    sampler = Sampler(rate, seed)
    return {i for i in range(N_ENTITIES) if sampler.decide({"entity_id": i})}


def test_decisions_are_identical_across_processes() -> None:
    here = _sample_in_process(0.1, seed=20240601)
    there = _sample_in_subprocess(0.1, seed=20240601)
    assert there == here
    assert here  # a non-trivial sample, or the comparison proves nothing


def test_another_seed_gives_another_sample() -> None:
    first = _sample_in_process(0.1, seed=1)
    second = _sample_in_process(0.1, seed=2)
    assert first != second
    # Independent seeds: the overlap is about p**2 * n = 1,000, far from the full 10,000.
    assert len(first & second) < 0.5 * min(len(first), len(second))


@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
def test_sampled_fraction_is_within_binomial_bounds(seed: int) -> None:
    p = 0.1
    mean = N_ENTITIES * p
    sigma = math.sqrt(N_ENTITIES * p * (1 - p))
    count = len(_sample_in_process(p, seed))
    assert mean - 5 * sigma <= count <= mean + 5 * sigma


def test_rate_zero_samples_none_and_rate_one_samples_all() -> None:
    ids = list(range(N_ENTITIES))
    assert not any(Sampler(0.0, seed=5).decide_rows({"entity_id": ids}))
    assert all(Sampler(1.0, seed=5).decide_rows({"entity_id": ids}))
    assert not should_sample(b"anything", 5, 0.0)
    assert should_sample(b"anything", 5, 1.0)
