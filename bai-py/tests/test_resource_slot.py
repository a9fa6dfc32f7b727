"""bai.ResourceSlot: construction, arithmetic, the partial order, JSON, mapping access, errors."""

import collections.abc
import pickle
from decimal import Decimal

import pytest

import bai
from bai import ResourceSlot


def test_values_of_every_type_are_exact():
    slot = ResourceSlot({"cpu": "1.5", "mem": "1g", "cuda.shares": 0.1, "tpu.device": Decimal("2"), "x": 3})
    assert slot["cpu"] == Decimal("1.5")
    assert slot["mem"] == Decimal(1 << 30)
    assert slot["cuda.shares"] == Decimal("0.1")  # the float's shortest repr, not 0.1000000000000000055…
    assert slot["tpu.device"] == 2
    assert slot["x"] == 3
    assert ResourceSlot({"mem": bai.BinarySize("4 GiB")})["mem"] == 4 << 30
    assert ResourceSlot({"mem": "1.5e3"})["mem"] == 1500
    assert ResourceSlot().is_zero() and len(ResourceSlot()) == 0


def test_a_missing_slot_is_zero():
    a = ResourceSlot({"cpu": 1})
    assert a == ResourceSlot({"cpu": 1, "mem": 0})
    assert a == {"cpu": "1.000", "mem": "0"}
    assert hash(a) == hash(ResourceSlot({"cpu": "1.0", "mem": 0}))
    assert a.amount("mem") == 0
    assert "mem" not in a
    with pytest.raises(KeyError):
        a["mem"]
    assert a.get("mem") is None
    assert a.get("mem", Decimal(0)) == 0
    assert (a - ResourceSlot({"mem": 5})).to_dict() == {"cpu": Decimal(1), "mem": Decimal(-5)}


def test_arithmetic():
    a = ResourceSlot({"cpu": 2, "mem": "4g"})
    b = ResourceSlot({"cpu": "0.5", "cuda.shares": 1})
    assert a + b == {"cpu": "2.5", "mem": 4 << 30, "cuda.shares": 1}
    assert a - b == {"cpu": "1.5", "mem": 4 << 30, "cuda.shares": -1}
    assert (a - b).has_negative()
    assert a + {"cpu": 1} == {"cpu": 3, "mem": "4g"}
    assert {"cpu": 1} + a == {"cpu": 3, "mem": "4g"}
    assert a * 2 == {"cpu": 4, "mem": "8g"}
    assert 3 * b == {"cpu": "1.5", "cuda.shares": 3}
    assert a * Decimal("0.5") == {"cpu": 1, "mem": "2g"}
    assert -b == {"cpu": "-0.5", "cuda.shares": -1}
    assert sum([a, b, b]) == {"cpu": 3, "mem": "4g", "cuda.shares": 2}
    assert (a - a).is_zero() and not (a - a)
    assert bool(a)
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(TypeError):
        a * "x"


def test_comparisons_are_fits_within():
    need = ResourceSlot({"cpu": 2, "mem": "4g"})
    free = ResourceSlot({"cpu": 8, "mem": "16g", "cuda.shares": 1})
    assert need <= free and need < free and need.fits_in(free)
    assert free >= need and free > need
    assert need <= need and not need < need
    # each has more of something: not comparable, every ordering is False
    x, y = ResourceSlot({"cpu": 3, "mem": 200}), ResourceSlot({"cpu": 4, "mem": 100})
    assert not (x <= y) and not (x >= y) and not (x < y) and not (x > y) and x != y
    assert need.shortfall({"cpu": 1, "mem": "8g"}) == {"cpu": 1}
    # equality with something that is not a slot set is False, never an error
    assert need != {"cpu": "lots"} and need != 5 and not (need == "cpu")
    with pytest.raises(bai.InvalidSlotError):
        need <= {"cpu": "lots"}
    with pytest.raises(TypeError):
        need <= 5
    assert len(need.shortfall(free)) == 0


def test_json_round_trip_and_pickle():
    slot = ResourceSlot({"cpu": "2.500", "mem": "4g", "cuda.shares": "0.25"})
    text = slot.to_json()
    assert text == '{"cpu":"2.5","cuda.shares":"0.25","mem":"4294967296"}'
    assert ResourceSlot.from_json(text) == slot
    assert pickle.loads(pickle.dumps(slot)) == slot
    assert eval(repr(slot), {"ResourceSlot": ResourceSlot}) == slot
    assert str(slot) == "{cpu: 2.5, cuda.shares: 0.25, mem: 4294967296}"
    with pytest.raises(bai.InvalidSlotError, match="invalid ResourceSlot JSON"):
        ResourceSlot.from_json('{"cpu": "many"}')


def test_mapping_protocol():
    slot = ResourceSlot({"mem": "1g", "cpu": 1})
    assert isinstance(slot, collections.abc.Mapping)
    assert list(slot) == ["cpu", "mem"]
    assert slot.keys() == ["cpu", "mem"]
    assert slot.items() == [("cpu", Decimal(1)), ("mem", Decimal(1 << 30))]
    assert dict(slot) == {"cpu": 1, "mem": 1 << 30}
    assert len(slot) == 2 and "cpu" in slot and 1 not in slot
    assert slot.humanize() == "cpu=1 mem=1g"
    assert ResourceSlot(slot) == slot
    assert slot.without_zeros() == slot and len(ResourceSlot({"cpu": 0}).without_zeros()) == 0


def test_from_user_input_follows_the_api():
    slot = ResourceSlot.from_user_input({"cpu": "1.23456", "mem": "512m", "cuda.shares": 0}, known={"cuda.shares": "count"})
    assert slot.to_dict() == {"cpu": Decimal("1.235"), "mem": Decimal(512 << 20), "cuda.shares": Decimal(0)}
    with pytest.raises(bai.InvalidSlotError, match='unknown resource slot "gpu"') as err:
        ResourceSlot.from_user_input({"gpu": 1}, known={})
    assert err.value.slot == "gpu"
    with pytest.raises(bai.InvalidSlotError, match="negative"):
        ResourceSlot.from_user_input({"cpu": -1})
    with pytest.raises(bai.InvalidSlotError, match="shared memory is not a slot"):
        ResourceSlot.from_user_input({"shmem": "1g"}, known={})


@pytest.mark.parametrize(
    "value, slot, reason",
    [
        ({"cpu": "lots"}, "cpu", '"lots" is not a decimal number'),
        ({"mem": "4x"}, "mem", '"4x" is neither a decimal number nor a size'),
        ({"cpu": True}, "cpu", "got the bool True"),
        ({"cpu": [1]}, "cpu", "got list"),
        ({"cpu": float("nan")}, "cpu", "not a finite decimal"),
        ({"cpu": 10**40}, "cpu", "not a finite decimal"),
    ],
)
def test_bad_values_name_the_slot_and_the_reason(value, slot, reason):
    with pytest.raises(bai.InvalidSlotError) as err:
        ResourceSlot(value)
    assert isinstance(err.value, bai.BaiError) and isinstance(err.value, ValueError)
    assert f'invalid value for slot "{slot}"' in str(err.value)
    assert reason in str(err.value)
    assert err.value.slot == slot


def test_bad_names_and_containers():
    with pytest.raises(bai.InvalidSlotError, match='invalid slot name "CPU": must start with a lowercase letter'):
        ResourceSlot({"CPU": 1})
    with pytest.raises(bai.InvalidSlotError, match="slot names are strings"):
        ResourceSlot({1: 1})
    with pytest.raises(bai.InvalidSlotError, match="expected a mapping"):
        ResourceSlot(5)


def test_overflow_is_an_error_not_a_panic():
    big = ResourceSlot({"cpu": "79228162514264337593543950335"})
    with pytest.raises(bai.ArithmeticOverflowError, match='arithmetic overflow on slot "cpu"'):
        big + big
    with pytest.raises(OverflowError):
        big * 2
