"""The reports committed under reports/ and models/evaluation: readable by any tool, repeatable.

Every results.json follows the one schema, its recorded command is one ``asc-train`` accepts,
and the figures its README quotes are the ones in its results.json. The scripts that
rerun them name missing corpora instead of failing halfway.
"""

import json
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest

from training.cli import build_parser
from training.report import RESULTS_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
REPORTS = sorted(
    p.parent
    for p in [*ROOT.glob("reports/**/results.json"), ROOT / "models/evaluation/results.json"]
)


def test_there_are_committed_reports():
    names = {p.name for p in REPORTS}
    assert {"codec-augmentation", "evaluation"} <= names, names


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_report_follows_the_schema_and_its_command_parses(report: Path):
    results = json.loads((report / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    for p in results["paths"]:
        assert 0.0 <= p["accuracy"] <= 1.0, p
    command = results.get("command")
    assert command, f"{report}/results.json does not record the command it came from"
    argv = shlex.split(command)
    assert argv[0] == "asc-train"
    build_parser().parse_args(argv[1:])  # exits (fails the test) on an unknown option
    readme = (report / "README.md").read_text()
    for option in (a for a in argv if a.startswith("--")):
        assert option in readme, f"{report}/README.md does not show {option} of its command"


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_quotes_the_results(report: Path):
    results = json.loads((report / "results.json").read_text())
    readme = (report / "README.md").read_text()
    if "detectors" in results:  # tables per codec and cutoff, in %, and the lossless accuracy
        for name, detector in results["detectors"].items():
            figure = f"{name} {100 * detector['lossless_accuracy']:.1f} %"
            assert figure in readme, figure
        return
    for p in results["paths"]:  # a table with one row per path
        assert f"`{p['path']}`" in readme or p["path"] == "none", p["path"]
        assert f"{p['accuracy']:.3f}" in readme, (p["path"], p["accuracy"])


@pytest.mark.parametrize("script", ["make-reports.sh", "band-limit-sweep.sh"])
def test_report_scripts_name_missing_corpora(tmp_path, script):
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / script)],
        env={"PATH": "/usr/bin:/bin", "WORK": str(tmp_path / "nothing")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"under {tmp_path / 'nothing'}/" in result.stderr, result.stderr
    assert "make-models.sh" in result.stderr
