"""The console a person reads: a log file for everything else, one-line errors, a progress line
that degrades to plain periodic lines off a terminal."""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from pathlib import Path

from jobs.cli import one_line
from jobs.cluster.spark_session import explain_start_failure
from jobs.commandline.console import run_log
from jobs.commandline.progress import RowProgress

REPO = Path(__file__).resolve().parents[2]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_prints_plain_lines_at_most_once_per_interval():
    out = io.StringIO()
    progress = RowProgress(100, "describe", out=out, interval_s=3600)
    progress.update(10, ok=9, errors=1)  # first update: printed
    progress.update(50, ok=48, errors=2)  # within the interval: not printed
    progress.update(100, ok=97, errors=3)
    progress.close()  # the final state is always printed
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("describe: 10/100 rows, ") and lines[0].endswith("ok 9, errors 1")
    assert lines[1].startswith("describe: 100/100 rows, ")
    assert "ETA 0s, ok 97, errors 3" in lines[1]
    assert "\r" not in out.getvalue()


def test_progress_on_a_terminal_redraws_one_line_in_place():
    out = _Tty()
    progress = RowProgress(40, "describe", out=out, interval_s=3600)
    for done in (10, 20, 30, 40):
        progress.update(done, ok=done, errors=0)
    progress.close()
    text = out.getvalue()
    assert "\r" in text  # tqdm redraws with carriage returns, not new lines
    assert text.count("\n") <= 1
    assert "40/40 rows" in text and "ok 40, errors 0" in text


def test_run_log_sends_stderr_logging_and_warnings_to_the_file_not_the_terminal(tmp_path, capfd):
    with run_log("describe", verbose=False, root=tmp_path) as run:
        print("noise from a library", file=sys.stderr, flush=True)
        os.write(2, b"noise from a child process\n")
        # Not "vllm": the vLLM engine lowers that logger to ERROR on purpose (quiet mode), so
        # this test would depend on whether an engine test ran first in the same process.
        logging.getLogger("a_library").warning("an engine warning")
        warnings.warn("a deprecation", UserWarning, stacklevel=1)
        print("the one line that matters", file=run.err, flush=True)
        path = run.path
    seen = capfd.readouterr()
    text = path.read_text()
    for noise in ("noise from a library", "noise from a child process", "an engine warning",
                  "a deprecation"):
        assert noise in text and noise not in seen.err
    assert "the one line that matters" in seen.err
    assert path.parent.parent == tmp_path and path.parent.name.endswith("-describe")
    # Restored: stderr reaches the terminal again.
    print("after the command", file=sys.stderr, flush=True)
    assert "after the command" in capfd.readouterr().err


def test_run_log_captures_a_library_logger_with_its_own_stdout_handler(tmp_path, capfd):
    # What vLLM does on import: its logger prints to stdout and does not propagate. CI failed
    # when an earlier test had imported vLLM in the same process.
    lib = logging.getLogger("fake_vllm_like")
    own = logging.StreamHandler(sys.stdout)
    lib.addHandler(own)
    lib.propagate = False
    try:
        with run_log("describe", verbose=False, root=tmp_path) as run:
            lib.warning("engine chatter")
            path = run.path
        seen = capfd.readouterr()
        assert "engine chatter" in path.read_text()
        assert "engine chatter" not in seen.out + seen.err
        # Restored afterwards.
        assert lib.handlers == [own] and lib.propagate is False
    finally:
        lib.removeHandler(own)
        lib.propagate = True


def test_verbose_run_log_streams_the_log_to_the_terminal(tmp_path, capfd):
    with run_log("ingest", verbose=True, root=tmp_path) as run:
        os.write(2, b"ivy says hello\n")
        path = run.path
    assert "ivy says hello" in capfd.readouterr().err
    assert "ivy says hello" in path.read_text()


def test_a_python_worker_error_is_reported_by_its_cause():
    err = RuntimeError(
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        '  File "udfs/runner/describe.py", line 3, in f\nAttributeError: no attribute prep_threads\n'
    )
    assert one_line(err) == "AttributeError: no attribute prep_threads"
    assert one_line(ValueError("plain message\nsecond line")) == "ValueError: plain message"


def test_an_unreachable_repository_is_named_in_one_line(tmp_path):
    log_file = tmp_path / "candid.log"
    log_file.write_text(
        ":: resolving dependencies :: org.apache.spark#spark-submit-parent;1.0\n"
        "\t\t:: io.delta#delta-spark_4.2_2.13;9.9.9: not found\n"
        "Exception in thread \"main\" java.lang.RuntimeException: [unresolved dependency: "
        "io.delta#delta-spark_4.2_2.13;9.9.9: not found]\n\tat org.apache.spark.deploy...\n"
    )
    confs = {
        "spark.jars.packages": "io.delta:delta-spark_4.2_2.13:9.9.9",
        "spark.jars.ivySettings": str(REPO / "conf" / "spark" / "ivysettings.xml"),
    }
    message = explain_start_failure(RuntimeError("JAVA_GATEWAY_EXITED"), log_file, confs)
    assert "\n" not in message
    assert message.startswith(
        "Spark could not resolve io.delta:delta-spark_4.2_2.13:9.9.9: "
        "not found: io.delta#delta-spark_4.2_2.13;9.9.9. "
        "Check that https://repo1.maven.org/maven2/ is reachable"
    )
    assert "(and" not in message  # the two mentions are one problem
    assert message.endswith(f"full log: {log_file}")


def test_a_jvm_that_dies_for_another_reason_shows_its_last_words(tmp_path):
    log_file = tmp_path / "candid.log"
    log_file.write_text("Picked up JAVA_TOOL_OPTIONS\nError: Could not create the Java VM\n\n")
    message = explain_start_failure(RuntimeError("gateway"), log_file, {})
    assert message == f"Spark did not start: Error: Could not create the Java VM; full log: {log_file}"
