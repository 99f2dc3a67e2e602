import pytest

from flows.cli import expand_set_pairs


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["run", "--set", "a=1", "b.c=2", "--steps", "3"], ["run", "--set", "a=1", "--set", "b.c=2", "--steps", "3"]),
        (["run", "--set", "a=1", "--set", "b=2"], ["run", "--set", "a=1", "--set", "b=2"]),
        (["run", "--set", "bad"], ["run", "--set", "bad"]),  # typer then reports the bad override
        (["run", "--set"], ["run", "--set"]),
        (["run", "--set=a=1", "b=2"], ["run", "--set=a=1", "b=2"]),
        (["fid", "a=b", "c"], ["fid", "a=b", "c"]),  # no --set: untouched
    ],
)
def test_several_pairs_after_one_set(argv, expected):
    assert expand_set_pairs(argv) == expected
