"""eval/fetch.py: a suite's v1 and v2 built from a (here fake) installed package, as its manifest says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.core.errors import InputError
from ragtune.eval.fetch import has_source, materialise

PAGES = {
    "boot.html": "<html><body><p>GRUB reads /boot/grub/grub.cfg. The kernel series is 5.x.</p></body></html>",
    "apt.html": "<html><body><p>There are 68980 packages. Pin-Priority 500 is the default.</p></body></html>",
    "mail.html": "<html><body><p>Submission uses port 587.</p></body></html>",
    "ssh.html": "<html><body><p>OpenSSH supports protocol 2 only.</p></body></html>",
}


def write_suite(tmp_path: Path, **changes) -> tuple[Path, Path]:
    """A fake package folder (four pages) and a suite folder whose manifest points at it."""
    package = tmp_path / "usr-share-fakedoc"
    package.mkdir(exist_ok=True)
    for name, html in PAGES.items():
        (package / name).write_text(html, encoding="utf-8")
    manifest = {
        "package": "fakedoc-en",
        "apt": "sudo apt-get install fakedoc-en",
        "base": str(package),
        "v1": ["boot.html", "apt.html", "mail.html"],
        "v2": {
            "remove": ["mail.html"],
            "add": ["ssh.html"],
            "edits": [
                {"file": "apt.html", "old": "68980 packages", "new": "71250 packages"},
                {"file": "boot.html", "old": "series is 5.x", "new": "series is 6.x"},
            ],
        },
    }
    manifest.update(changes)
    suite = tmp_path / "fakedoc"
    suite.mkdir(exist_ok=True)
    (suite / "source.json").write_text(json.dumps(manifest), encoding="utf-8")
    return suite, package


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_has_source_only_for_a_manifest_without_docs(tmp_path):
    suite, _ = write_suite(tmp_path)
    assert has_source(suite)
    (suite / "docs").mkdir()
    assert not has_source(suite)
    assert not has_source(tmp_path / "nowhere")


def test_v1_is_the_listed_files_unchanged(tmp_path):
    suite, package = write_suite(tmp_path)
    built = materialise(suite, cache=tmp_path / "cache")
    assert names(built["v1"]) == ["apt.html", "boot.html", "mail.html"]
    assert (built["v1"] / "apt.html").read_bytes() == (package / "apt.html").read_bytes()


def test_v2_drops_removed_and_gains_added_files(tmp_path):
    suite, _ = write_suite(tmp_path)
    built = materialise(suite, cache=tmp_path / "cache")
    assert names(built["v2"]) == ["apt.html", "boot.html", "ssh.html"]


def test_v2_applies_the_edits(tmp_path):
    suite, _ = write_suite(tmp_path)
    built = materialise(suite, cache=tmp_path / "cache")
    apt = (built["v2"] / "apt.html").read_text()
    assert "There are 71250 packages. Pin-Priority 500 is the default." in apt
    assert "68980" not in apt
    assert "The kernel series is 6.x." in (built["v2"] / "boot.html").read_text()


def test_build_goes_to_a_suite_named_folder_in_the_cache(tmp_path):
    suite, _ = write_suite(tmp_path)
    built = materialise(suite, cache=tmp_path / "cache")
    folder = built["v1"].parent
    assert folder.parent == tmp_path / "cache"
    assert folder.name.startswith("fakedoc-")
    assert built["v2"].parent == folder


def test_default_cache_is_under_ragtune_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "rt-cache"))
    suite, _ = write_suite(tmp_path)
    built = materialise(suite)
    assert built["v1"].parent.parent == tmp_path / "rt-cache" / "suites"


def test_a_second_call_reuses_the_build(tmp_path):
    suite, _ = write_suite(tmp_path)
    first = materialise(suite, cache=tmp_path / "cache")
    marker = first["v1"] / "apt.html"
    marker.write_text("touched after the build")  # a rebuild would overwrite this
    second = materialise(suite, cache=tmp_path / "cache")
    assert second == first
    assert marker.read_text() == "touched after the build"


def test_a_build_without_its_marker_is_rebuilt(tmp_path):
    suite, package = write_suite(tmp_path)
    first = materialise(suite, cache=tmp_path / "cache")
    (first["v1"].parent / ".complete").unlink()
    (first["v1"] / "apt.html").write_text("half written")
    again = materialise(suite, cache=tmp_path / "cache")
    assert (again["v1"] / "apt.html").read_bytes() == (package / "apt.html").read_bytes()


def test_a_changed_manifest_gets_its_own_build(tmp_path):
    suite, _ = write_suite(tmp_path)
    first = materialise(suite, cache=tmp_path / "cache")
    write_suite(tmp_path, v1=["boot.html", "apt.html", "mail.html", "ssh.html"], v2={})
    second = materialise(suite, cache=tmp_path / "cache")
    assert second["v1"] != first["v1"]
    assert names(second["v1"]) == ["apt.html", "boot.html", "mail.html", "ssh.html"]


def test_missing_package_files_name_the_package_and_the_install_command(tmp_path):
    suite, package = write_suite(tmp_path)
    (package / "mail.html").unlink()
    with pytest.raises(InputError) as caught:
        materialise(suite, cache=tmp_path / "cache")
    assert str(caught.value) == (
        "suite fakedoc needs the Debian package fakedoc-en: sudo apt-get install fakedoc-en"
    )


def test_base_argument_overrides_the_manifest(tmp_path):
    suite, package = write_suite(tmp_path, base="/nonexistent/fakedoc")
    built = materialise(suite, cache=tmp_path / "cache", base=package)
    assert names(built["v1"]) == ["apt.html", "boot.html", "mail.html"]


def test_an_edit_whose_old_text_is_missing_names_file_and_edit(tmp_path):
    edits = [{"file": "apt.html", "old": "68981 packages", "new": "71250 packages"}]
    suite, _ = write_suite(tmp_path, v2={"edits": edits})
    with pytest.raises(InputError) as caught:
        materialise(suite, cache=tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message
    assert "v2 edit 1 (apt.html)" in message
    assert "'68981 packages' occurs 0 times" in message


def test_an_edit_whose_old_text_occurs_twice_is_refused(tmp_path):
    edits = [{"file": "apt.html", "old": "P", "new": "p"}]  # "Pin-Priority" holds two capital Ps
    suite, _ = write_suite(tmp_path, v2={"edits": edits})
    with pytest.raises(InputError, match=r"v2 edit 1 \(apt.html\): old text 'P' occurs 2 times"):
        materialise(suite, cache=tmp_path / "cache")


def test_a_failed_build_leaves_nothing_in_the_cache(tmp_path):
    suite, _ = write_suite(tmp_path, v2={"edits": [{"file": "apt.html", "old": "absent", "new": "x"}]})
    with pytest.raises(InputError):
        materialise(suite, cache=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_manifest_that_is_not_json_is_one_line(tmp_path):
    suite, _ = write_suite(tmp_path)
    (suite / "source.json").write_text('{"package": "fakedoc-en",\n oops}')
    with pytest.raises(InputError) as caught:
        materialise(suite, cache=tmp_path / "cache")
    assert "\n" not in str(caught.value)
    assert "source.json: not valid JSON" in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"v1": "apt.html"}, "'v1' must be a list of file names"),
        ({"v1": []}, "'v1' lists no files"),
        ({"v1": ["../etc/passwd"]}, "'../etc/passwd' is not a plain file name"),
        ({"package": ""}, "'package' must be a non-empty string"),
        ({"v2": {"remove": ["ssh.html"]}}, "'v2.remove' names ssh.html, which is not in 'v1'"),
        ({"v2": {"add": ["apt.html"]}}, "'v2.add' names apt.html, which is already in 'v1'"),
        ({"v2": {"edits": [{"file": "apt.html", "old": "x"}]}}, "v2 edit 1 must have non-empty strings"),
        (
            {"v2": {"remove": ["mail.html"], "edits": [{"file": "mail.html", "old": "587", "new": "2525"}]}},
            "v2 edit 1 edits mail.html, which is not in v2",
        ),
    ],
)
def test_bad_manifest_is_one_line_naming_the_field(tmp_path, changes, expected):
    suite, _ = write_suite(tmp_path, **changes)
    with pytest.raises(InputError) as caught:
        materialise(suite, cache=tmp_path / "cache")
    assert "\n" not in str(caught.value)
    assert expected in str(caught.value)
