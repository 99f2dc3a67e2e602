"""The source's revision outside a git checkout (an image): the commit its build recorded, checked as a full hash;
and `commit_exists` says when there is no repository to check a commit in (issue 28)."""

from __future__ import annotations

import subprocess

import pytest

from components.core import source
from components.core.errors import GanopsError


def test_a_checkout_gives_its_head_and_an_image_its_build_record(tmp_path, monkeypatch):
    assert (
        source.code_revision()[0]
        == subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=source.SOURCE_ROOT).stdout.strip()
    )
    monkeypatch.setattr(source, "SOURCE_ROOT", tmp_path)  # as in an image: no .git
    monkeypatch.setenv(source.BUILD_COMMIT_ENV, "ab" * 20)
    monkeypatch.setenv(source.BUILD_DIRTY_ENV, "true")
    assert source.code_revision() == ("ab" * 20, True)
    for bad in ("", "main", "ab" * 19, "AB" * 20, "ab" * 20 + "\n"):
        monkeypatch.setenv(source.BUILD_COMMIT_ENV, bad)
        assert source.code_revision()[0] is None
    monkeypatch.delenv(source.BUILD_COMMIT_ENV)
    monkeypatch.delenv(source.BUILD_DIRTY_ENV)
    assert source.code_revision() == (None, False)


def test_commit_exists_is_none_without_a_repository_and_checks_the_revision_first(tmp_path):
    head = source.code_revision()[0]
    assert head and source.commit_exists(source.SOURCE_ROOT, head) is True
    assert source.commit_exists(source.SOURCE_ROOT, "0" * 40) is False
    assert source.commit_exists(tmp_path, head) is None
    with pytest.raises(GanopsError, match="code revision"):
        source.commit_exists(source.SOURCE_ROOT, "--output=/tmp/x")
