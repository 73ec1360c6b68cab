"""The journal alone: one live point per (key, step), what a resume drops and keeps, what waits
for the resume point, training time across attempts, and records surviving a kill -9."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap

from alignment.tracking.journal import Journal
from alignment.tracking.provenance import this_process


def _steps(journal: Journal, key: str, states=("pending", "inflight", "sent")) -> list[int]:
    return [step for k, step, _ in journal.points(states) if k == key]


def test_second_point_at_same_key_and_step_is_kept_as_dropped(tmp_path):
    j = Journal(tmp_path)
    a = j.begin_attempt(this_process(), "own")
    assert j.add_metrics(a, {"loss": 1.0, "acc": 0.5}, step=1) == (0, 0)
    # Same value for acc, another for loss: both dropped, one counted as differing.
    assert j.add_metrics(a, {"loss": 2.0, "acc": 0.5}, step=1) == (2, 1)
    assert j.points(("pending",)) == [("loss", 1, 1.0), ("acc", 1, 0.5)]
    assert j.points(("dropped",)) == [("loss", 1, 2.0), ("acc", 1, 0.5)]
    assert j.unsent() == 2


def test_each_evaluation_attempt_keeps_its_values_but_training_steps_stay_once(tmp_path):
    j = Journal(tmp_path)
    first = j.begin_attempt(this_process(), "attach")
    assert j.add_metrics(first, {"eval/aqi": 0.5}, step=0, gen=first) == (0, 0)
    assert j.add_metrics(first, {"eval/aqi": 0.6}, step=0, gen=first) == (1, 1)  # same attempt
    second = j.begin_attempt(this_process(), "attach")
    assert j.add_metrics(second, {"eval/aqi": 0.7}, step=0, gen=second) == (0, 0)  # a re-run
    assert [v for k, _, v in j.points(("pending",)) if k == "eval/aqi"] == [0.5, 0.7]
    assert j.add_metrics(second, {"loss": 1.0}, step=4) == (0, 0)
    assert j.add_metrics(second, {"loss": 1.1}, step=4) == (1, 1)  # training: gen 0, once


def test_nan_is_stored_as_nan_not_zero(tmp_path):
    j = Journal(tmp_path)
    a = j.begin_attempt(this_process(), "own")
    j.add_metrics(a, {"loss": float("nan")}, step=3)
    ((key, step, value),) = j.points(("pending",))
    assert (key, step, value) == ("loss", 3, None)  # None is NaN in the journal; see Sender
    # A NaN twin of a NaN point is the same value, not a differing one.
    assert j.add_metrics(a, {"loss": math.nan}, step=3) == (1, 0)


def test_rewind_replaces_only_unsent_points_after_the_checkpoint(tmp_path):
    """Attempt 1 logs steps 1..6 and dies: 1-3 acknowledged, 4 in flight, 5-6 never sent.
    Attempt 2 resumes from the checkpoint at step 2 and logs 3..6 again.
    Expected: 5 and 6 from attempt 2 (attempt 1's are dropped); 3 (sent) and 4 (maybe sent)
    from attempt 1 (attempt 2's twins dropped); every step once."""
    j = Journal(tmp_path)
    a1 = j.begin_attempt(this_process(), "own")
    for step in range(1, 7):
        j.add_metrics(a1, {"loss": float(step)}, step=step)
    seqs = {step: seq for seq, step in j._db.execute("SELECT seq, step FROM records")}
    j.mark([seqs[1], seqs[2], seqs[3]], "sent")
    j.mark([seqs[4]], "inflight")
    a2 = j.begin_attempt(this_process(), "own")
    assert j.rewind(a2, step=2) == 2
    for step in range(3, 7):
        j.add_metrics(a2, {"loss": 10.0 + step}, step=step)
    live = j.points(("pending", "inflight", "sent"))
    assert sorted((s, v) for _, s, v in live) == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 4.0),
        (5, 15.0),
        (6, 16.0),
    ]


def test_earlier_attempts_points_wait_for_the_resume_point(tmp_path):
    """Until the new attempt rewinds, the sender must not send what the rewind may drop;
    step-0 points (data counts) and the new attempt's own records are not held."""
    j = Journal(tmp_path)
    a1 = j.begin_attempt(this_process(), "own")
    j.add_metrics(a1, {"data/rows": 9.0}, step=0)
    j.add_metrics(a1, {"loss": 1.0}, step=5)
    a2 = j.begin_attempt(this_process(), "own")
    j.add(a2, "status", [("RUNNING", None)])
    held = [(r.kind, r.key) for r in j.pending(100, hold_before=a2)]
    assert held == [("metric", "data/rows"), ("status", "RUNNING")]
    assert len(j.pending(100)) == 3


def test_prior_training_time_counts_killed_and_finished_attempts(tmp_path):
    """Attempt 1: train 100 -> last record 130 (killed). Attempt 2: train 200 -> end 260.
    Before attempt 3: 30 + 60 = 90 s."""
    j = Journal(tmp_path)
    for begin, last, end in ((100.0, 130.0, None), (200.0, 270.0, 260.0)):
        n = j.begin_attempt(this_process(), "own")
        j.update_attempt(n, train_begin=begin, last_seen=last)
        if end is not None:
            j.update_attempt(n, train_end=end)
    n3 = j.begin_attempt(this_process(), "own")
    assert j.prior_train_seconds(n3) == 90.0


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from alignment.tracking.journal import Journal
    from alignment.tracking.provenance import this_process
    j = Journal(Path(sys.argv[1]))
    a = j.begin_attempt(this_process(), "own")
    for step in range(1, 100000):
        j.add_metrics(a, {"loss": step / 7, "acc": 1 / step}, step=step)
        print(step, flush=True)
    """
)


def test_kill9_mid_stream_loses_no_committed_record(tmp_path):
    """Every step the writer reported as journaled is there after a kill -9, with both keys,
    and nothing is torn: the journal opens, and its steps are exactly 1..N for some N."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    reported = 0
    for line in proc.stdout:
        reported = int(line)
        if reported >= 300:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    j = Journal(tmp_path)
    loss, acc = _steps(j, "loss"), _steps(j, "acc")
    assert loss == acc == list(range(1, len(loss) + 1))
    assert len(loss) >= reported
    values = dict((s, v) for k, s, v in j.points(("pending",)) if k == "loss")
    assert all(values[s] == s / 7 for s in loss)
