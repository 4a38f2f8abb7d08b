"""`logger-daemon export LOGDIR --format csv|json [--run RE] [--tag RE] [-o FILE]`, run as a command
(`python -m logger_daemon export`) on logs our writer wrote through a real daemon; its output parsed
and checked against what was logged and what TensorBoard's accumulator reads."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from typing import Any

import pytest
from tensorboard.backend.event_processing import event_accumulator as ea

from logger_client import SummaryWriter

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WALL = 1_700_000_000.125


def export(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "logger_daemon", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def logs(runtime_dir: str, logdir: str) -> str:
    with SummaryWriter(logdir) as writer:
        for step in range(20):
            writer.add_scalar("loss", 1.0 / (step + 1), step, walltime=WALL + step)
            writer.add_scalars("acc", {"train": step * 0.1, "val": step * 0.05}, step, walltime=WALL + step)
        writer.add_scalar("odd/nan", float("nan"), 1, walltime=WALL)
        writer.add_scalar("odd/inf", float("inf"), 2, walltime=WALL)
        writer.add_scalar("odd/neg_inf", float("-inf"), 3, walltime=WALL)
        writer.add_text("notes", "first, with a comma\nand a newline", 0, walltime=WALL)
        writer.add_text("notes", 'then "quoted"', 5, walltime=WALL + 5)
    return logdir


def _accumulated(root: str, run: str, tag: str) -> list[tuple[int, float, float]]:
    accumulator = ea.EventAccumulator(os.path.join(root, run), size_guidance={ea.SCALARS: 0})
    accumulator.Reload()
    return [(e.step, e.wall_time, e.value) for e in accumulator.Scalars(tag)]


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_csv_holds_every_scalar_and_text_as_tensorboard_reads_them(logs: str) -> None:
    done = export(logs)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == ["run", "tag", "kind", "step", "wall_time", "value"]
    keys = [(row["run"], row["tag"]) for row in rows]
    assert keys == sorted(keys)  # run by run, tag by tag
    scalars: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for row in rows:
        if row["kind"] == "scalar":
            scalars.setdefault((row["run"], row["tag"]), []).append(
                (int(row["step"]), float(row["wall_time"]), float(row["value"]))
            )
    assert set(scalars) == {
        (".", "loss"),
        (".", "odd/nan"),
        (".", "odd/inf"),
        (".", "odd/neg_inf"),
        ("acc/train", "acc"),
        ("acc/val", "acc"),
    }
    for (run, tag), got in scalars.items():
        expected = _accumulated(logs, run, tag)
        assert [g[:2] for g in got] == [e[:2] for e in expected]  # steps and wall times, exactly
        assert all(_same(g[2], e[2]) for g, e in zip(got, expected))  # values round-trip exactly
    texts = [(row["step"], row["value"]) for row in rows if row["kind"] == "text"]
    assert texts == [("0", "first, with a comma\nand a newline"), ("5", 'then "quoted"')]
    assert {row["tag"] for row in rows if row["kind"] == "text"} == {"notes/text_summary"}


def test_json_is_strict_and_columnar(logs: str) -> None:
    done = export(logs, "--format", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout, parse_constant=lambda name: pytest.fail(f"non-standard JSON {name}"))
    assert document["logdir"] == logs and document["damage"] == []
    by_key = {(s["run"], s["tag"]): s for s in document["scalars"]}
    loss = by_key[(".", "loss")]
    assert loss["step"] == list(range(20))
    assert loss["wall_time"] == [WALL + step for step in range(20)]
    assert [v for _, _, v in _accumulated(logs, ".", "loss")] == loss["value"]
    assert by_key[(".", "odd/nan")]["value"] == ["NaN"]
    assert by_key[(".", "odd/inf")]["value"] == ["Infinity"]
    assert by_key[(".", "odd/neg_inf")]["value"] == ["-Infinity"]
    assert by_key[("acc/val", "acc")]["value"][2] == pytest.approx(0.1)
    (notes,) = document["text"]
    assert (notes["run"], notes["tag"], notes["step"]) == (".", "notes/text_summary", [0, 5])
    assert notes["text"] == ["first, with a comma\nand a newline", 'then "quoted"']


def test_run_and_tag_filters_and_an_output_file(logs: str, tmp_path: Any) -> None:
    out = tmp_path / "acc.json"
    done = export(logs, "--format", "json", "--run", "^acc/", "--tag", "acc", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    document = json.loads(out.read_text())
    assert [(s["run"], s["tag"]) for s in document["scalars"]] == [("acc/train", "acc"), ("acc/val", "acc")]
    assert document["text"] == []
    only_text = export(logs, "--tag", "text_summary$")
    assert {row["kind"] for row in csv.DictReader(io.StringIO(only_text.stdout))} == {"text"}
    nothing = export(logs, "--run", "no such run")
    assert nothing.stdout == "run,tag,kind,step,wall_time,value\n"


def test_a_missing_directory_and_a_bad_pattern_are_errors(tmp_path: Any) -> None:
    missing = export(str(tmp_path / "missing"))
    assert missing.returncode == 1 and "no log directory" in missing.stderr
    bad = export(str(tmp_path), "--tag", "(")
    assert bad.returncode == 2 and "--tag" in bad.stderr and "not a regular expression" in bad.stderr
    empty = export(str(tmp_path), "--format", "json")
    assert empty.returncode == 0 and json.loads(empty.stdout)["scalars"] == []


def test_a_damaged_file_is_exported_up_to_the_damage_and_reported(logs: str) -> None:
    (name,) = [n for n in os.listdir(logs) if "tfevents" in n]
    path = os.path.join(logs, name)
    size = os.path.getsize(path)
    os.truncate(path, size - 3)
    done = export(logs, "--format", "json")
    assert done.returncode == 0, done.stderr
    (damage,) = json.loads(done.stdout)["damage"]
    assert damage["path"] == path and damage["reason"] == "torn" and damage["records_skipped"] == 1
    assert f"{path}: torn" in done.stderr
