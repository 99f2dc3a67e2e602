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


def test_printed_progress_gives_an_estimate_after_the_first_update_then_every_twentieth(capsys):
    from components.core.progress import PrintedProgress

    now = [0.0]
    bar = PrintedProgress(200, clock=lambda: now[0], label="fid images", unit="images")
    for _ in range(200):
        now[0] += 0.5
        bar.update(1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "fid images 1/200 (0%), 2.0 images/s, 1m39s left"  # after the first image: an early estimate
    assert lines[1].startswith("fid images 10/200 (5%)") and len(lines) == 21 and lines[-1].startswith("fid images 200/200")
