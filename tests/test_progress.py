"""The progress display: a redrawn bar on a terminal, one plain line per finished run into a log file."""

from __future__ import annotations

from harness.schedule.progress import Progress, format_seconds


def test_into_a_log_it_writes_one_plain_line_per_finished_run(capsys):
    progress = Progress(3, "local", interactive=False)
    for _ in range(5):  # polls between finishes write nothing
        progress.update({"done": 0}, running=2)
    progress.update({"done": 1}, running=2)
    progress.update({"done": 1}, running=1)
    progress.note("failed rte/standard seed 3: boom")
    progress.note("retrying rte/standard seed 3")  # only failures are worth a line
    progress.update({"done": 2, "failed": 1}, running=0)
    progress.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0] == "harness: 3 run(s) on local"
    assert [line.split(",")[0] for line in lines[1:]] == [
        "runs 1/3",
        "harness: failed rte/standard seed 3: boom",
        "runs 3/3",
    ]
    assert "done 2 running 0 failed 1" in lines[-1]


def test_disabled_progress_writes_nothing(capsys):
    progress = Progress(2, "local", enabled=False, interactive=False)
    progress.update({"done": 2}, running=0)
    progress.note("failed x")
    progress.close()
    assert capsys.readouterr().err == ""


def test_format_seconds():
    assert (format_seconds(59.6), format_seconds(3725), format_seconds(float("nan"))) == ("1m00s", "1h02m", "?")
