"""crawler.keys.KeySet: a done-set that must answer exactly like a Python set of ids and uuids."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crawler.keys import KeySet

# 2 shared cores under load: no per-example deadline, no slow-generation health check.
LOADED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

UUID = "0b6d3c8e-2d1a-4f7e-9a0e-3b1c2a9f7e11"
# Ids as the API gives them (non-negative, up to 64 bits) and uuids for model images without an id.
keys = st.one_of(st.integers(min_value=0, max_value=2**64 - 1), st.uuids().map(str))


def test_ids_go_to_the_bitmap_and_uuids_to_the_set():
    done = KeySet([12345678, UUID, 0, 2**63])
    assert list(done.ints) == [0, 12345678, 2**63]
    assert done.strs == {UUID}
    assert len(done) == 4
    assert 12345678 in done and UUID in done and 0 in done and 2**63 in done
    assert 12345679 not in done and "12345678" not in done and UUID.upper() not in done


def test_discard_removes_either_kind_and_ignores_absent_keys():
    done = KeySet([1, 2, UUID])
    done.discard(1)
    done.discard(UUID)
    done.discard(99)  # absent: no error
    done.discard("absent")
    assert set(done) == {2} and len(done) == 1


def test_ids_added_and_discarded_in_bulk_leave_the_other_keys_alone():
    """A manifest run's ids join the done-set, and leave the gone-set, as one bitmap each."""
    from pyroaring import BitMap64

    gone = KeySet([1, 2, 3, UUID])
    gone.add_ids(BitMap64([3, 4]))
    gone.discard_ids(BitMap64([2, 4, 99]))
    assert gone == {1, 3, UUID}


def test_an_id_and_its_digits_as_text_are_different_keys():
    done = KeySet(["42"])
    assert 42 not in done and "42" in done
    done.add(42)
    assert len(done) == 2


def test_serialised_bitmap_with_its_uuids_round_trips():
    done = KeySet([5, 7, 2**40, UUID])
    again = KeySet.deserialize(done.serialize(), strs=done.strs)
    assert again == done
    assert again is not done and 2**40 in again and UUID in again
    # serialize() carries the ids only: the uuids travel beside it (the snapshot stores them apart).
    assert KeySet.deserialize(done.serialize()) == {5, 7, 2**40}


def test_equality_with_sets_and_keysets():
    assert KeySet([1, UUID]) == {1, UUID}
    assert KeySet([1, UUID]) == frozenset({UUID, 1})
    assert KeySet([1]) != {1, 2}
    assert KeySet([1, 2]) != {1, 3}
    assert KeySet([1, 2]) != KeySet([1])
    assert KeySet([1]) != [1]  # not a set: NotImplemented, then identity comparison


@LOADED
@given(st.lists(st.tuples(st.booleans(), keys), max_size=60))
def test_behaves_like_a_set_under_any_adds_and_discards(ops):
    done, model = KeySet(), set()
    for add, key in ops:
        if add:
            done.add(key)
            model.add(key)
        else:
            done.discard(key)
            model.discard(key)
    assert len(done) == len(model)
    assert sorted(map(str, done)) == sorted(map(str, model))
    assert all(key in done for key in model)
    assert done == model
    assert KeySet.deserialize(done.serialize(), strs=done.strs) == model
