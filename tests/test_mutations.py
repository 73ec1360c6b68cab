"""scripts/mutate.py: the suite catches broken maths and broken safeguards.

Fast: every mutation still applies (its text occurs exactly once, the mutated file compiles),
names are unique and every selected test exists, so a refactor that moves the code a mutation
targets fails here, in the fast suite, instead of leaving a mutation that tests nothing.
Slow: the script itself, every mutation in a scratch copy; it fails when one survives.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from mutate import verdict  # noqa: E402
from mutations import MUTATIONS  # noqa: E402


def test_mutations_apply_once_compile_and_name_existing_tests():
    assert len(MUTATIONS) >= 15
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)
    for m in MUTATIONS:
        source = (REPO / m.path).read_text()
        assert source.count(m.old) == 1, f"{m.name}: its text occurs {source.count(m.old)} times"
        assert m.new != m.old
        compile(source.replace(m.old, m.new), m.path, "exec")
        assert m.tests, m.name
        for test in m.tests:
            path, _, name = test.partition("::")
            assert (REPO / path).is_file(), (m.name, test)
            if name:
                assert f"def {name.split('[')[0]}(" in (REPO / path).read_text(), (m.name, test)


def test_the_issues_mutations_are_in_the_list():
    names = {m.name for m in MUTATIONS}
    assert {
        "trainer_reference_adapter_enabled",
        "cita_drop_lambda_kl",
        "factual_drop_delta_offset",
    } <= names


def test_verdicts():
    assert verdict(0, "") == ("SURVIVED", "-")
    assert verdict(1, "FAILED tests/a.py::t - x\nFAILED tests/b.py::u")[1] == "tests/a.py::t"
    assert verdict(2, "ERROR tests/a.py - ImportError") == ("KILLED", "tests/a.py")
    assert verdict(5, "")[0] == "ERROR"  # nothing collected: no verdict, never a kill
    assert verdict(-1, "")[0] == "KILLED"


@pytest.mark.slow
def test_no_mutation_survives():
    proc = subprocess.run(
        [sys.executable, "scripts/mutate.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=6 * 3600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "SURVIVED" not in proc.stdout.split("| mutation |")[-1]
