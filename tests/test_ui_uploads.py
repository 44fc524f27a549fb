"""Uploaded file names and contents: only plain files of a readable type, only inside the uploads folder."""

from __future__ import annotations

import os

import pytest

from ragtune.cli.main import main
from ragtune.core.errors import InputError
from ragtune.ui.settings import UISettings
from ragtune.ui.uploads import MAX_NAME_CHARS, safe_name, save_upload

MB = 2**20


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notes.md", "notes.md"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\evil.md", "evil.md"),
        ("/abs/path/report.PDF", "report.pdf"),
        (".hidden.md", "hidden.md"),
        ("tab\tand\nnewline.txt", "tabandnewline.txt"),
        ('quote"star*pipe|.html', "quote_star_pipe_.html"),
        ("café menu.md", "café menu.md"),
    ],
)
def test_safe_names_keep_only_the_file_name(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("program.exe", "file type .exe is not indexed"),
        ("README", "file type (none) is not indexed"),
        ("...md", "file type (none) is not indexed"),
        ("../.md", "file type (none) is not indexed"),
        ("/.txt", "file type (none) is not indexed"),
    ],
)
def test_names_without_a_readable_type_are_refused(name, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        safe_name(name)


def test_a_name_of_only_unsafe_characters_is_refused():
    with pytest.raises(InputError, match="empty once unsafe characters are removed"):
        safe_name(". .md")


def test_a_very_long_name_is_shortened_but_keeps_its_type():
    name = safe_name("x" * 500 + ".md")
    assert len(name) == MAX_NAME_CHARS and name.endswith(".md")


def test_an_upload_is_written_inside_the_folder_only(tmp_path):
    folder = tmp_path / "index" / "documents"
    saved = save_upload(folder, "../../outside.md", b"# Hi", MB)
    assert saved.path == folder / "outside.md" and not saved.replaced
    assert sorted(p.name for p in tmp_path.rglob("*.md")) == ["outside.md"]
    assert (folder / "outside.md").read_bytes() == b"# Hi"


def test_uploading_the_same_name_again_replaces_it(tmp_path):
    save_upload(tmp_path, "a.txt", b"one", MB)
    again = save_upload(tmp_path, "a.txt", b"two", MB)
    assert again.replaced and (tmp_path / "a.txt").read_text() == "two"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]  # no temporary file left behind


def test_a_link_planted_in_the_folder_is_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "a.txt").symlink_to(outside)
    with pytest.raises(InputError, match="not a regular file"):
        save_upload(folder, "a.txt", b"overwrite", MB)
    assert outside.read_text() == "keep me"


@pytest.mark.parametrize(
    ("data", "message"), [(b"", "is empty"), (b"x" * (MB + 1), "the upload limit is 1 MB")]
)
def test_empty_and_too_large_uploads_are_refused(tmp_path, data, message):
    with pytest.raises(InputError, match=message):
        save_upload(tmp_path, "a.txt", data, MB)
    assert not (tmp_path / "a.txt").exists()


def test_settings_travel_to_the_app_as_json_and_back():
    settings = UISettings(index="/tmp/i", model="/m", adapters_dir="/a", runs_dir="/r", max_upload_mb=3)
    assert UISettings.from_json(settings.to_json()) == settings
    with pytest.raises(InputError, match="use `ragtune ui`"):
        UISettings.from_json('{"unknown": 1}')


def test_the_ui_command_builds_a_private_streamlit_command():
    from ragtune.cli.ui_command import streamlit_command

    command = streamlit_command(UISettings(index="i", max_upload_mb=2.5), "127.0.0.1", 8600)
    options = dict(zip(command[5:-2:2], command[6:-2:2], strict=True))
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("streamlit_app.py")
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--client.showErrorDetails"] == "none"
    assert options["--server.maxUploadSize"] == "3" and options["--server.port"] == "8600"
    assert UISettings.from_json(command[-1]).index == "i"


def test_a_port_in_use_is_one_line(capsys, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--index", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ragtune: error: cannot listen on 127.0.0.1:") and "pass another --port" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--port", "70000"], "between 1 and 65535"), (["--max-upload-mb", "0"], "megabytes > 0")],
)
def test_bad_ui_options_are_one_line(capsys, tmp_path, argv, message):
    assert main(["ui", "--index", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_stopping_ragtune_ui_with_sigterm_stops_the_streamlit_server_too(tmp_path):
    import os
    import signal
    import time

    from tests.browser import start_ui, stop_group, wait_healthy

    server, url = start_ui("--index", str(tmp_path / "index"))
    try:
        wait_healthy(server, url)
        os.kill(
            server.pid, signal.SIGTERM
        )  # the ragtune process only, as `kill PID` or a service manager does
        server.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(server.pid, 0)  # raises once no process of the group is left
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the streamlit server outlived `ragtune ui`")
    finally:
        stop_group(server)
