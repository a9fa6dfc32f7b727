"""bai.BinarySize: parsing, formatting, arithmetic, comparisons, errors."""

import pickle

import pytest

import bai
from bai import BinarySize


@pytest.mark.parametrize(
    "text, size",
    [("1g", 1 << 30), ("1.5GiB", 3 << 29), ("4GB", 4 << 30), ("512m", 512 << 20), ("1.1k", 1126), (" 42 ", 42), ("12_345 bytes", 12345)],
)
def test_parses_like_backend_ai(text, size):
    assert BinarySize(text) == size
    assert BinarySize.parse(text).bytes == size


def test_ints_and_formatting():
    size = BinarySize(1536 << 20)
    assert int(size) == 1536 << 20 and size.bytes == 1536 << 20
    assert str(size) == "1.5 GiB"
    assert size.short() == "1.5g"
    assert size.in_unit("m") == "1536m"
    assert repr(size) == "BinarySize('1.5g')"
    assert repr(BinarySize(1000)) == "BinarySize(1000)"
    assert str(BinarySize(1)) == "1 byte"
    assert [0, 1, 2, 3][BinarySize(2)] == 2  # __index__
    assert BinarySize(BinarySize("1k")) == 1024
    assert BinarySize.from_json(BinarySize("2k").to_json()) == 2048
    assert BinarySize.from_json('"2k"') == 2048
    assert pickle.loads(pickle.dumps(size)) == size


def test_arithmetic_and_comparisons():
    a, b = BinarySize("1g"), BinarySize("512m")
    assert a + b == BinarySize("1.5g")
    assert a - b == b
    assert a + 1 == (1 << 30) + 1 and 1 + a == a + 1
    assert b * 2 == a and 2 * b == a
    assert (1 << 31) - a == a
    assert b < a and a > b and a >= a and b <= a and a != b
    assert a == 1 << 30 and hash(a) == hash(1 << 30)
    assert len({a, BinarySize(1 << 30), 1 << 30}) == 1
    assert sorted([a, b]) == [b, a]
    assert not BinarySize(0) and BinarySize(1)
    with pytest.raises(TypeError):
        a + "1g"


def test_out_of_range_results_raise():
    with pytest.raises(bai.ArithmeticOverflowError, match="would be negative"):
        BinarySize("1k") - BinarySize("2k")
    with pytest.raises(bai.ArithmeticOverflowError, match="exceeds the largest size"):
        BinarySize("15e") + BinarySize("15e")
    with pytest.raises(bai.ArithmeticOverflowError):
        BinarySize("1k") * -1


@pytest.mark.parametrize(
    "value, reason",
    [
        ("4x", "unknown unit"),
        ("-1g", "sizes cannot be negative"),
        (-5, "sizes cannot be negative"),
        ("1.1", "fractional bytes"),
        ("", "empty size"),
        ("16e", "too large"),
        (2**64, "too large"),
        (1.5, "expected an int (bytes), a str"),
    ],
)
def test_bad_input_names_the_input_and_the_reason(value, reason):
    with pytest.raises(bai.InvalidSizeError) as err:
        BinarySize(value)
    assert isinstance(err.value, bai.BaiError) and isinstance(err.value, ValueError)
    assert str(err.value).startswith("invalid size ")
    assert reason in str(err.value)
    assert reason in err.value.reason
    assert err.value.input is not None
