"""Provenance records the workflow's commit and the versions of the model stacks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlff2d.io.provenance import WORKFLOW_DIR, git_commit, provenance


def test_commit_of_the_checkout(tmp_path: Path) -> None:
    head = subprocess.run(["git", "-C", str(WORKFLOW_DIR), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = git_commit()
    if head.returncode == 0:
        assert commit is not None and commit.startswith(head.stdout.strip())
    assert git_commit(tmp_path) is None  # not a git checkout


def test_versions_present() -> None:
    record = provenance()
    assert record["packages"]["torch"].startswith("2.13")
    assert record["python"].count(".") == 2
