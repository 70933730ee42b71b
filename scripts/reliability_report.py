"""How malformed inputs end: generated inputs per category go through the loaders and the command line and each
ending is tallied as accepted (a valid result), rejected (BadInput / exit code 2, one line, nothing written) or
anything else (a failure: a traceback, another exit code, several lines, a file left behind, an invalid result).

Inputs: the hypothesis strategies of tests/malformed.py (random npz payloads, hostile npz files), the hostile
video fixtures of tests/test_hostile_videos.py, and the bundled-style synthetic hand clip cut at random bytes or
with random bytes overwritten. Videos go through real `handcli` processes; npz files through the loader and
the CLI in-process (typer's CliRunner). The table is written into docs/reliability.md between the
`reliability-report` markers.

    .venv/bin/python scripts/reliability_report.py [--examples 300] [--videos 12] [--seed 0] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from handcli.artifacts import load_artifact  # noqa: E402
from handcli.cache import code_version  # noqa: E402
from handcli.cli import app  # noqa: E402
from handcli.errors import BadInput  # noqa: E402
from handcli.inputs import load_input  # noqa: E402
from handcli.render.synthetic import render_synthetic_video  # noqa: E402
from tests.malformed import hostile_files, npz_payloads, write_npz  # noqa: E402
from tests.test_hostile_videos import HEIGHT, HOSTILE_VIDEOS, NUM_FRAMES, WIDTH  # noqa: E402

DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability-report:begin -->", "<!-- reliability-report:end -->"
ACCEPTED, REJECTED, FAILED = "accepted", "rejected", "failed"


class Tally:
    """Endings of one category, with the first few failures kept for the report."""

    def __init__(self, inputs: str, through: str, expect: str = "either"):
        self.inputs, self.through, self.expect = inputs, through, expect
        self.counts: Counter = Counter()
        self.failures: list[str] = []

    def add(self, ending: str, detail: str = "") -> None:
        # an input that should have been rejected but was accepted (or the reverse) is a failure too
        if self.expect != "either" and ending != FAILED and ending != self.expect:
            ending, detail = FAILED, f"expected {self.expect}, got {ending} {detail}".strip()
        self.counts[ending] += 1
        if ending == FAILED and len(self.failures) < 5:
            self.failures.append(detail[:300])

    @property
    def tried(self) -> int:
        return sum(self.counts.values())


# ------------------------------------------------------------------------------------------------ npz files
def loader_ending(path: Path) -> tuple[str, str]:
    """How `load_input` ends on `path`."""
    try:
        artifact, _ = load_input(path)
    except BadInput as error:
        if not error.message or "\n" in error.message:
            return FAILED, f"BadInput message not one line: {error.message!r}"
        return REJECTED, ""
    except Exception as error:  # anything but BadInput is a failure
        return FAILED, f"{type(error).__name__}: {error}"
    H, T = artifact.valid.shape
    if artifact.keypoints3d.shape != (H, T, 21, 3) or not np.isfinite(artifact.keypoints3d[artifact.valid]).all():
        return FAILED, "accepted an artifact that breaks the contract"
    return ACCEPTED, ""


def cli_ending(code: int, stderr: str, stdout: str, directory: Path, before: set[str], out: Path,
               work: Path | None = None) -> tuple[str, str]:
    """Classify a finished `handcli` command run in `directory` (`before`: the files there beforehand;
    `work`: its cache directory, if any)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    written = [p.name for p in directory.iterdir() if p.name not in before and p not in (out, work)]
    if work is not None and work.is_dir():
        written += [p.name for p in work.glob("*.npz")]
    if "Traceback" in stderr + stdout:
        return FAILED, "traceback: " + (stderr + stdout)[-200:]
    if code == 2:
        if len(lines) != 1:
            return FAILED, f"exit 2 with {len(lines)} lines: {lines}"
        if out.exists() or written:
            return FAILED, f"exit 2 but wrote {[out.name] if out.exists() else []} {written}"
        return REJECTED, lines[0]
    if code == 0:
        try:
            load_artifact(out)
        except Exception as error:
            return FAILED, f"exit 0 but the output does not load: {error}"
        return ACCEPTED, ""
    return FAILED, f"exit {code}: {lines[-1] if lines else ''}"


def run_strategy(strategy, count: int, random_seed: int, judge) -> None:
    """Draw `count` examples and judge each (inside hypothesis, where lazily drawn values still work)."""
    @seed(random_seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def trial(example):
        judge(example)

    trial()


def npz_categories(count: int, random_seed: int) -> list[Tally]:
    payload_loader = Tally("random npz payloads (shapes, dtypes, NaN/inf, empty, strings, extra keys)",
                           "loader (`load_input`)")
    hostile_loader = Tally("hostile npz files (truncated zip, pickle as npz, object arrays, junk bytes, "
                           "non-UTF-8/non-object meta, huge headers, empty, zip without arrays)",
                           "loader (`load_input`)", expect=REJECTED)
    hostile_cli = Tally("hostile npz files (as above)", "`handcli estimate` (in-process)", expect=REJECTED)
    payload_cli = Tally("random npz payloads (as above)", "`handcli estimate` (in-process)")
    runner = CliRunner()

    def in_directory(writer, action):
        with tempfile.TemporaryDirectory() as directory:
            directory = Path(directory)
            path = writer(directory)
            return action(directory, path)

    def through_cli(tally: Tally):
        def action(directory: Path, path: Path):
            out = directory / "out.npz"
            before = set(p.name for p in directory.iterdir())
            result = runner.invoke(app, ["estimate", "--input", str(path), "--out", str(out), "--device", "cpu"])
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                tally.add(FAILED, f"uncaught {type(result.exception).__name__}: {result.exception}")
                return
            tally.add(*cli_ending(result.exit_code, result.stderr, result.stdout, directory, before, out))
        return action

    def loader(tally: Tally):
        return lambda directory, path: tally.add(*loader_ending(path))

    run_strategy(npz_payloads(), count, random_seed,
                 lambda payload: in_directory(write_npz(payload), loader(payload_loader)))
    run_strategy(hostile_files(), count, random_seed, lambda case: in_directory(case[1], loader(hostile_loader)))
    run_strategy(hostile_files(), max(1, count // 4), random_seed + 1,
                 lambda case: in_directory(case[1], through_cli(hostile_cli)))
    run_strategy(npz_payloads(), max(1, count // 4), random_seed + 1,
                 lambda payload: in_directory(write_npz(payload), through_cli(payload_cli)))
    return [payload_loader, hostile_loader, hostile_cli, payload_cli]


# ---------------------------------------------------------------------------------------------------- videos
def handcli_process(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "handcli.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=900)


def video_ending(command: str, video: Path, directory: Path) -> tuple[str, str]:
    out, work = directory / f"{command}_out.npz", directory / f"{command}_cache"
    before = set(p.name for p in directory.iterdir())
    extra = ["--work-dir", str(work)] if command == "run" else []
    result = handcli_process(command, str(video), "--out", str(out), *extra)
    return cli_ending(result.returncode, result.stderr, result.stdout, directory, before, out,
                      work if command == "run" else None)


def cut_at_random_byte(clip: Path, directory: Path, rng: random.Random) -> Path:
    data = clip.read_bytes()
    path = directory / "cut.mp4"
    path.write_bytes(data[: rng.randrange(1, len(data))])
    return path


def overwrite_random_bytes(clip: Path, directory: Path, rng: random.Random) -> Path:
    data = bytearray(clip.read_bytes())
    for _ in range(rng.randint(1, 8)):
        start = rng.randrange(0, len(data))
        length = min(rng.choice([1, 16, 256, 4096]), len(data) - start)
        data[start: start + length] = rng.randbytes(length)
    path = directory / "damaged.mp4"
    path.write_bytes(bytes(data))
    return path


def video_categories(count: int, random_seed: int, log) -> list[Tally]:
    rng = random.Random(random_seed)
    fixtures_detect = Tally("hostile video fixtures (tests/test_hostile_videos.py, one each)", "`handcli detect`")
    fixtures_run = Tally("hostile video fixtures (as above)", "`handcli run`")
    cut = Tally("the 20-frame hand clip cut at a random byte", "`handcli detect`")
    damaged = Tally("the 20-frame hand clip with 1-8 random runs of 1-4096 bytes overwritten", "`handcli detect`")
    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / "hand.mp4"
        render_synthetic_video(clip, NUM_FRAMES, WIDTH, HEIGHT)
        for name, (make, on_detect, on_run) in HOSTILE_VIDEOS.items():
            for tally, command, expected in ((fixtures_detect, "detect", on_detect), (fixtures_run, "run", on_run)):
                with tempfile.TemporaryDirectory(dir=scratch) as directory:
                    video = make(clip, Path(directory))
                    ending, detail = video_ending(command, video, Path(directory))
                    wanted = ACCEPTED if expected == "accept" else REJECTED
                    if ending == REJECTED and expected not in detail:
                        ending, detail = FAILED, f"{name}: rejected for another reason than '{expected}': {detail}"
                    elif ending != FAILED and ending != wanted:
                        ending, detail = FAILED, f"{name}: expected {wanted}, got {ending}"
                    tally.add(ending, detail)
                    log(f"  {command} {name}: {ending} {detail}")
        for tally, damage in ((cut, cut_at_random_byte), (damaged, overwrite_random_bytes)):
            for _ in range(count):
                with tempfile.TemporaryDirectory(dir=scratch) as directory:
                    video = damage(clip, Path(directory), rng)
                    ending, detail = video_ending("detect", video, Path(directory))
                    tally.add(ending, detail)
                    log(f"  {tally.inputs[:40]}: {ending} {detail}")
    return [fixtures_detect, fixtures_run, cut, damaged]


# ---------------------------------------------------------------------------------------------------- report
def table(tallies: list[Tally], command: str, seconds: float) -> str:
    rows = ["| inputs | through | tried | accepted: valid result | rejected: exit 2 / `BadInput`, one line, "
            "nothing written | anything else (failure) |", "| --- | --- | --- | --- | --- | --- |"]
    for tally in tallies:
        rows.append(f"| {tally.inputs} | {tally.through} | {tally.tried} | {tally.counts[ACCEPTED]} | "
                    f"{tally.counts[REJECTED]} | {tally.counts[FAILED]} |")
    total = sum(t.tried for t in tallies)
    failed = sum(t.counts[FAILED] for t in tallies)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [BEGIN, "", f"Generated by `{command}` on {stamp} (machine clock), handcli {code_version()}, "
             f"{seconds:.0f} s. {total} inputs tried, {failed} ended in anything else.", "", *rows]
    failures = [f"- {t.inputs} through {t.through}: {detail}" for t in tallies for detail in t.failures]
    if failures:
        lines += ["", "Failures (first few per category):", "", *failures]
    return "\n".join(lines + ["", END])


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300, help="generated npz inputs per loader category "
                        "(a quarter of that through the CLI)")
    parser.add_argument("--videos", type=int, default=12, help="randomly damaged clips per video category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/reliability.md alone")
    args = parser.parse_args()
    started = time.perf_counter()
    log = lambda message: print(message, flush=True)
    log(f"npz inputs: {args.examples} per loader category")
    tallies = npz_categories(args.examples, args.seed)
    log(f"videos: {len(HOSTILE_VIDEOS)} fixtures x 2 commands, {args.videos} per damage category")
    tallies += video_categories(args.videos, args.seed, log)
    command = "python scripts/reliability_report.py" + "".join(
        f" --{name} {value}" for name, value in (("examples", args.examples), ("videos", args.videos),
                                                ("seed", args.seed)))
    block = table(tallies, command, time.perf_counter() - started)
    print(block)
    print(json.dumps({f"{t.inputs} | {t.through}": dict(t.counts) for t in tallies}, indent=1))
    if not args.no_write:
        write_doc(block)
        print(f"wrote the table into {DOC.relative_to(REPO)}")
    sys.exit(1 if any(t.counts[FAILED] for t in tallies) else 0)


if __name__ == "__main__":
    main()
