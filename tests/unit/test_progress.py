from components.core.progress import PrintedProgress


def lines_of(bar, updates, seconds_each, capsys):
    now = [0.0]
    bar.clock, bar.started = (lambda: now[0]), 0.0
    for _ in range(updates):
        now[0] += seconds_each
        bar.update(1)
    return capsys.readouterr().out.splitlines()


def test_printed_progress_gives_an_estimate_after_the_first_update_then_every_twentieth(capsys):
    lines = lines_of(PrintedProgress(200, label="fid images", unit="images"), 200, 0.5, capsys)
    assert lines[0] == "fid images 1/200 (0%), 2.0 images/s, 1m39s left"  # after the first image: an early estimate
    assert lines[1].startswith("fid images 10/200 (5%)") and len(lines) == 21 and lines[-1].startswith("fid images 200/200")


def test_a_resumed_run_counts_the_steps_done_before_towards_the_total_not_the_rate(capsys):
    lines = lines_of(PrintedProgress(5000, initial=3000), 2000, 0.1, capsys)
    assert lines[0] == "train step 3001/5000 (60%), 10.0 steps/s, 3m19s left"
    assert lines[-1] == "train step 5000/5000 (100%), 10.0 steps/s, 0m00s left"
