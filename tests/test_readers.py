"""Examples of what each reader makes of a file's bytes, including the files it refuses and why."""

from __future__ import annotations

import io
import json
import logging
import random
import zipfile

import docx
import pytest
from fpdf import FPDF

from ragtune.rag.ingest.readers import SUPPORTED_SUFFIXES, ReadLimits, ReadResult, parse_bytes

SOURCE = "/corpus/file"
TEXT_SUFFIXES = [".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl"]


def read(data: bytes | str, suffix: str) -> ReadResult:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return parse_bytes(data, suffix, SOURCE + suffix)


def read_one(data: bytes | str, suffix: str):
    result = read(data, suffix)
    assert result.skipped is None, result.skipped
    assert len(result.documents) == 1
    return result.documents[0]


def jsonl(*records: object) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Files built in code


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def make_docx(paragraphs: list[str], table: list[list[str]] | None = None, title: str = "") -> bytes:
    document = docx.Document()
    document.core_properties.title = title
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, text in enumerate(row):
                grid.cell(r, c).text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def report_pdf() -> bytes:
    return make_pdf(
        ["Revenue grew in the third quarter. " * 20, "Costs fell slightly over the year. " * 20],
        title="Annual Report",
    )


# ---------------------------------------------------------------------------------------------------------
# Dispatch


def test_supported_suffixes():
    expected = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".json", ".jsonl"}
    assert expected == SUPPORTED_SUFFIXES


def test_unsupported_suffix_is_skipped():
    result = read("hello", ".xyz")
    assert result == ReadResult(documents=[], skipped="unsupported file type '.xyz'")


RANDOM_BYTES_REASONS = {
    ".docx": "cannot read DOCX: File is not a zip file",
    ".pdf": "cannot read PDF: Stream has ended unexpectedly",
    **{suffix: "binary content, not text" for suffix in TEXT_SUFFIXES},
}


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_SUFFIXES))
def test_random_bytes_are_skipped_with_the_reason_of_their_format(suffix):
    data = random.Random(suffix).randbytes(3000)
    assert read(data, suffix) == ReadResult(documents=[], skipped=RANDOM_BYTES_REASONS[suffix])


@pytest.mark.parametrize("error", [MemoryError(), RecursionError("maximum recursion depth exceeded")])
def test_a_reader_that_runs_out_of_memory_or_stack_gives_a_skip(monkeypatch, error):
    from ragtune.rag.ingest import readers

    def explode(data, source, limits):
        raise error

    monkeypatch.setitem(readers._READERS, ".txt", ("TXT", explode))
    expected = "cannot read TXT: " + (type(error).__name__ + (f": {error}" if str(error) else ""))
    assert read("fine text", ".txt") == ReadResult(documents=[], skipped=expected)


# ---------------------------------------------------------------------------------------------------------
# Text, title and metadata per format


@pytest.mark.parametrize(
    ("suffix", "data", "text", "metadata"),
    [
        (".txt", "Just some notes.\n", "Just some notes.", {"type": "txt"}),
        (
            ".md",
            "Intro line\n\n# Install Guide #\n\nRun it.",
            "Intro line\n\n# Install Guide #\n\nRun it.",
            {"type": "md", "title": "Install Guide"},
        ),
        (".markdown", "# Notes\nbody", "# Notes\nbody", {"type": "md", "title": "Notes"}),
        (".md", "## Only a subheading\ntext", "## Only a subheading\ntext", {"type": "md"}),
        (
            ".html",
            "<html><head><title>Home  Page</title></head><body><p>Welcome</p></body></html>",
            "Welcome",
            {"type": "html", "title": "Home Page"},
        ),
        (
            ".htm",
            "<body><h1>Big Heading</h1><p>Body text</p></body>",
            "Big Heading\nBody text",
            {"type": "html", "title": "Big Heading"},
        ),
    ],
)
def test_reads_text_and_title(suffix, data, text, metadata):
    document = read_one(data, suffix)
    assert (document.source, document.record, document.text, document.metadata) == (
        SOURCE + suffix,
        "",
        text,
        metadata,
    )


def test_markdown_title_skips_comments_in_code_fences():
    data = "```bash\n# install first\npip install x\n```\n\n# Real Title\n"
    assert read_one(data, ".md").metadata["title"] == "Real Title"


def test_markdown_is_kept_as_text_not_rendered():
    data = "# T\n\n* **bold** item\n\n```py\nx = 1\n```"
    assert read_one(data, ".md").text == data


# ---------------------------------------------------------------------------------------------------------
# Normalisation


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("a\r\nb\r\n", "a\nb"),
        ("old mac\rline", "old mac\nline"),
        ("trailing   \nspaces\t\n", "trailing\nspaces"),
        ("one\n\n\n\n\ntwo", "one\n\ntwo"),
        ("one\n  \n \t \n\ntwo", "one\n\ntwo"),
        ("\n\n   padded   \n\n", "padded"),
        ("  indented\n    code", "indented\n    code"),
    ],
)
def test_text_is_normalised(raw, normalised):
    assert read_one(raw, ".txt").text == normalised


# ---------------------------------------------------------------------------------------------------------
# Files refused as a whole


@pytest.mark.parametrize("suffix", TEXT_SUFFIXES)
@pytest.mark.parametrize("data", [b"", b"   \r\n\t\n  "], ids=["empty", "whitespace"])
def test_empty_file_is_skipped(suffix, data):
    assert read(data, suffix) == ReadResult(documents=[], skipped="empty: no text")


def test_html_with_only_markup_is_skipped():
    result = read("<html><head><title>T</title><style>p {}</style></head><body> </body></html>", ".html")
    assert result.skipped == "empty: no text"


@pytest.mark.parametrize("suffix", TEXT_SUFFIXES)
def test_binary_content_is_skipped(suffix):
    data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"text" * 10
    assert read(data, suffix) == ReadResult(documents=[], skipped="binary content, not text")


@pytest.mark.parametrize("suffix", TEXT_SUFFIXES)
def test_invalid_utf8_reports_byte_and_offset(suffix):
    data = "café ok, then ".encode() + b"\xff" + b" more"
    result = read(data, suffix)
    assert result == ReadResult(documents=[], skipped="not valid UTF-8 (byte 0xff at offset 15)")


def test_invalid_utf8_offset_counts_the_bom():
    assert read(b"\xef\xbb\xbfab\xe9c", ".txt").skipped == "not valid UTF-8 (byte 0xe9 at offset 5)"


@pytest.mark.parametrize(
    ("suffix", "data", "text"),
    [
        (".txt", "hello", "hello"),
        (".md", "# Title\nbody", "# Title\nbody"),
        (".html", "<p>hello</p>", "hello"),
        (".json", '{"text": "hello"}', "hello"),
        (".jsonl", '{"text": "hello"}\n', "hello"),
    ],
)
def test_utf8_bom_is_accepted(suffix, data, text):
    assert read_one(b"\xef\xbb\xbf" + data.encode(), suffix).text == text


@pytest.mark.parametrize("suffix", [".txt", ".md", ".html", ".json", ".jsonl"])
@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
        (b"\xff\xfe\x00\x00", "utf-32-le"),
        (b"\x00\x00\xfe\xff", "utf-32-be"),
    ],
    ids=["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"],
)
def test_utf16_and_utf32_with_a_bom_are_decoded(suffix, bom, codec):
    body = {".html": "<p>Café ünïcode</p>", ".json": '{"text": "Café ünïcode"}'}.get(suffix, "Café ünïcode")
    body = '{"text": "Café ünïcode"}\n' if suffix == ".jsonl" else body
    assert read_one(bom + body.encode(codec), suffix).text == "Café ünïcode"


def test_utf16_bom_outranks_a_meta_charset():
    data = b"\xff\xfe" + '<meta charset="windows-1252"><p>naïve</p>'.encode("utf-16-le")
    assert read_one(data, ".html").text == "naïve"


def test_utf16_with_a_bom_but_an_odd_byte_is_skipped_with_its_offset():
    assert read(b"\xff\xfe" + "ab".encode("utf-16-le") + b"c", ".txt").skipped == (
        "not valid UTF-16 (byte 0x63 at offset 6)"
    )


def test_unexpected_parser_failure_becomes_a_skip_reason():
    result = read("[" * 100_000, ".json")
    assert result.documents == []
    assert result.skipped.startswith("cannot read JSON: RecursionError: ")


# ---------------------------------------------------------------------------------------------------------
# HTML


def test_html_drops_non_text_elements_and_source_layout():
    data = """<html><head><title>T</title><style>body { color: red }</style></head><body>
        <script>var hidden = 1;</script>
        <noscript>Enable JavaScript</noscript>
        <template><p>template row</p></template>
        <svg><title>icon</title><text>svg label</text></svg>
        <!-- a comment -->
        <nav>Menu</nav>
        <p>Visible   paragraph</p>
        <footer>Footer text</footer>
    </body></html>"""
    assert read_one(data, ".html").text == "Menu\nVisible   paragraph\nFooter text"


def test_html_title_is_metadata_not_text_even_without_head_tag():
    document = read_one("<title>Page Title</title><p>Content</p><div>outside body is kept</div>", ".html")
    assert (document.text, document.metadata["title"]) == ("Content\noutside body is kept", "Page Title")


def test_html_inline_elements_are_separated_by_newlines():
    assert read_one("<p>Hello <b>world</b>!</p>", ".html").text == "Hello\nworld\n!"


def test_html_deeply_nested_is_read_in_memory_that_follows_the_text():
    import tracemalloc

    depth = 100_000
    data = ("<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth + "</body></html>").encode()
    tracemalloc.start()
    try:
        document = read_one(data, ".html")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert document.text == "deep text"
    # A tree of 100,000 tags took about 60 MB; the tag stack is a list of one interned string.
    assert peak < 8 * len(data), f"peak {peak / 2**20:.1f} MB for a {len(data) / 2**20:.1f} MB page"


def test_html_stray_and_unclosed_tags_close_like_a_tree_would():
    data = "<div><script>x = 1</div></span><p>after</p></script><p>shown</p><title>T</title><h1>H</h1>"
    document = read_one(data, ".html")
    assert (document.text, document.metadata) == ("shown\nH", {"type": "html", "title": "T"})


def test_html_first_h1_is_the_title_when_there_is_no_title_tag():
    document = read_one("<h1>First</h1><p>x</p><h1>Second</h1>", ".html")
    assert (document.text, document.metadata["title"]) == ("First\nx\nSecond", "First")


def test_html_uses_charset_declared_in_meta():
    data = b'<html><head><meta charset="windows-1252"></head><body><p>caf\xe9 \x93quoted\x94</p></body>'
    assert read_one(data, ".html").text == "caf\u00e9 \u201cquoted\u201d"


def test_html_uses_charset_from_http_equiv_meta():
    data = b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><p>na\xefve</p>'
    assert read_one(data, ".html").text == "na\u00efve"


def test_html_charset_that_does_not_fit_falls_back_to_utf8():
    data = '<meta charset="ascii"><p>café</p>'.encode()
    assert read_one(data, ".html").text == "café"


def test_html_unknown_charset_falls_back_to_utf8():
    data = b'<meta charset="no-such-charset"><p>caf\xe9</p>'
    assert read(data, ".html").skipped == "not valid UTF-8 (byte 0xe9 at offset 38)"


# ---------------------------------------------------------------------------------------------------------
# PDF


def test_pdf_reads_all_pages_with_title_and_page_count(report_pdf):
    document = read_one(report_pdf, ".pdf")
    assert document.metadata == {"type": "pdf", "title": "Annual Report", "pages": 2}
    assert "Revenue grew in the third quarter." in document.text
    assert "Costs fell slightly over the year." in document.text
    assert document.text.index("Revenue") < document.text.index("Costs")


def test_pdf_without_title_has_no_title():
    assert read_one(make_pdf(["Untitled content"]), ".pdf").metadata == {"type": "pdf", "pages": 1}


def test_pdf_truncated_is_skipped_with_reason(report_pdf):
    result = read(report_pdf[: len(report_pdf) // 2], ".pdf")
    assert result.documents == []
    assert result.skipped.startswith("cannot read PDF: ")


@pytest.mark.parametrize(
    "data",
    [b"", random.Random(7).randbytes(5000), b"%PDF-1.7\n" + random.Random(8).randbytes(5000)],
    ids=["empty", "random", "pdf-header-then-garbage"],
)
def test_pdf_garbage_is_skipped_with_one_line_reason(data):
    result = read(data, ".pdf")
    assert result.documents == []
    assert result.skipped.startswith("cannot read PDF: ")
    assert "\n" not in result.skipped
    assert len(result.skipped) <= 170


def test_pdf_with_user_password_is_skipped():
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="Secret plans")
    pdf.set_encryption(owner_password="owner", user_password="user")
    result = read(bytes(pdf.output()), ".pdf")
    assert result == ReadResult(documents=[], skipped="cannot read PDF: File has not been decrypted")


def test_pdf_without_text_is_skipped():
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50)
    result = read(bytes(pdf.output()), ".pdf")
    assert result == ReadResult(documents=[], skipped="PDF has no extractable text (scanned images?)")


def test_pdf_warnings_are_silenced_and_log_level_restored(report_pdf, caplog):
    logger = logging.getLogger("pypdf")
    original = logger.level
    logger.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.DEBUG):
            read(report_pdf[: len(report_pdf) // 2], ".pdf")
        assert [r for r in caplog.records if r.name.startswith("pypdf")] == []
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(original)


# ---------------------------------------------------------------------------------------------------------
# DOCX


def test_docx_reads_paragraphs_then_table_rows_and_title():
    data = make_docx(
        ["First paragraph.", "", "Second paragraph."],
        table=[["Name", "Role"], ["Ada", "Engineer"]],
        title="Team Memo",
    )
    document = read_one(data, ".docx")
    assert document.text == "First paragraph.\n\nSecond paragraph.\nName | Role\nAda | Engineer"
    assert document.metadata == {"type": "docx", "title": "Team Memo"}


def test_docx_without_title_has_no_title():
    assert read_one(make_docx(["Body"]), ".docx").metadata == {"type": "docx"}


def test_docx_merged_cell_appears_once_in_its_row():
    document = docx.Document()
    table = document.add_table(rows=1, cols=3)
    table.cell(0, 0).merge(table.cell(0, 1)).text = "wide"
    table.cell(0, 2).text = "narrow"
    out = io.BytesIO()
    document.save(out)
    assert read_one(out.getvalue(), ".docx").text == "wide | narrow"


def test_docx_tabs_line_breaks_and_page_breaks():
    from docx.enum.text import WD_BREAK

    document = docx.Document()
    run = document.add_paragraph("Name:\tAda").add_run(" Lovelace")
    run.add_break()
    run.add_text("second line")
    run.add_break(WD_BREAK.PAGE)
    run.add_text("same line after a page break")
    out = io.BytesIO()
    document.save(out)
    assert read_one(out.getvalue(), ".docx").text == (
        "Name:\tAda Lovelace\nsecond linesame line after a page break"
    )


def test_docx_nested_table_text_stays_out_of_its_cell():
    document = docx.Document()
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "outer"
    table.cell(0, 1).add_table(rows=1, cols=1).cell(0, 0).text = "inner"
    out = io.BytesIO()
    document.save(out)
    assert read_one(out.getvalue(), ".docx").text == "outer |"


def docx_inflating_to(megabytes: int) -> bytes:
    """A DOCX whose document.xml is `megabytes` MB of one repeated paragraph: a few KB compressed."""
    plain = zipfile.ZipFile(io.BytesIO(make_docx(["x"])))
    xml = plain.read("word/document.xml").decode()
    paragraph = "<w:p><w:r><w:t>boom</w:t></w:r></w:p>"
    xml = xml.replace("<w:body>", "<w:body>" + paragraph * (megabytes * 2**20 // len(paragraph)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in plain.infolist():
            archive.writestr(info, xml if info.filename == "word/document.xml" else plain.read(info))
    return out.getvalue()


def test_docx_zip_bomb_is_skipped_by_its_uncompressed_size_before_parsing():
    data = docx_inflating_to(4)
    inflated = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    assert len(data) < 60_000 and inflated > 4 * 2**20
    result = parse_bytes(data, ".docx", SOURCE, ReadLimits(max_bytes=2**20))
    assert result == ReadResult(
        documents=[],
        skipped=f"too large uncompressed: this DOCX inflates to {inflated / 2**20:.1f} MB "
        "(> 1.0 MB limit; raise max_file_mb)",
    )


def test_docx_under_the_limit_is_read_whole():
    result = parse_bytes(docx_inflating_to(1), ".docx", SOURCE, ReadLimits(max_bytes=8 * 2**20))
    (document,) = result.documents
    assert set(document.text.split("\n")) == {"boom", "x"}


def test_docx_member_inflating_past_its_declared_size_is_stopped():
    data = bytearray(docx_inflating_to(1))
    name = b"word/document.xml"
    # The central directory entry names the file 46 bytes in; its uncompressed size sits at bytes 24-27.
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24 : entry + 28] = (1024).to_bytes(4, "little")  # declare 1 KB instead of 1 MB
    result = parse_bytes(bytes(data), ".docx", SOURCE, ReadLimits(max_bytes=8 * 2**20))
    # zipfile reads no further than the declared size, so the lie shows as a checksum error.
    reason = "cannot read DOCX: BadZipFile: Bad CRC-32 for file 'word/document.xml'"
    assert result == ReadResult(documents=[], skipped=reason)


def test_docx_with_no_text_is_skipped():
    assert read(make_docx([]), ".docx").skipped == "empty: no text"


def zip_without_word_parts() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a zip at all", "cannot read DOCX: File is not a zip file"),
        (b"PK\x03\x04" + b"\x00" * 50, "cannot read DOCX: File is not a zip file"),
        (
            zip_without_word_parts(),
            "cannot read DOCX: no word/document.xml in the archive (not a Word file?)",
        ),
    ],
    ids=["text", "zip-header-only", "other-zip"],
)
def test_docx_corrupt_is_skipped(data, reason):
    assert read(data, ".docx") == ReadResult(documents=[], skipped=reason)


def test_docx_truncated_is_skipped():
    data = make_docx(["Some text"])
    result = read(data[: len(data) // 2], ".docx")
    assert result.documents == []
    assert result.skipped.startswith("cannot read DOCX: ")


# ---------------------------------------------------------------------------------------------------------
# JSON and JSONL records


def test_json_array_gives_one_document_per_record():
    data = json.dumps([{"text": "first"}, {"text": "second", "id": "doc-b"}])
    result = read(data, ".json")
    assert [(d.record, d.text) for d in result.documents] == [("item-0", "first"), ("doc-b", "second")]
    assert all(d.source == SOURCE + ".json" for d in result.documents)
    assert result.problems == []


def test_json_object_wrapping_one_list_reads_the_list():
    data = json.dumps({"data": [{"content": "alpha"}, {"content": "beta"}]})
    assert [d.text for d in read(data, ".json").documents] == ["alpha", "beta"]


def test_json_single_object_is_one_document():
    document = read_one(json.dumps({"title": "Policy", "body": "Be kind.", "version": 3}), ".json")
    assert (document.record, document.text) == ("", "Be kind.")
    assert document.metadata == {"type": "json", "title": "Policy", "version": 3}


def test_json_invalid_is_skipped():
    result = read('[{"text": "a"},', ".json")
    reason = "invalid JSON: Expecting value: line 1 column 16 (char 15)"
    assert result == ReadResult(documents=[], skipped=reason)


def test_json_scalar_top_level_is_skipped():
    result = read('"just a string"', ".json")
    assert result.skipped == "no records with text"
    assert result.problems == ["top level: not a JSON object or array (string)"]


def test_json_bad_items_are_problems_and_the_rest_is_read():
    data = json.dumps([{"text": "good"}, "a bare string", {"text": "   "}, {"count": 2}])
    result = read(data, ".json")
    assert [d.text for d in result.documents] == ["good"]
    assert result.problems == ["item 1: not a JSON object (string)", "item 2: no text", "item 3: no text"]


def test_jsonl_bad_line_is_reported_and_other_records_kept():
    data = jsonl({"text": "one"}, {"text": "two"}, "{not json", "", {"text": "five"})
    result = read(data, ".jsonl")
    assert result.skipped is None
    assert [(d.record, d.text) for d in result.documents] == [
        ("line-1", "one"),
        ("line-2", "two"),
        ("line-5", "five"),
    ]
    assert result.problems == ["line 3: invalid JSON (Expecting property name enclosed in double quotes)"]


def test_jsonl_line_numbers_count_blank_lines_and_crlf():
    data = '\r\n\r\n{"text": "third"}\r\n[1, 2]\r\nnull\r\n{"text": "sixth"}\r\n'
    result = read(data, ".jsonl")
    assert [d.record for d in result.documents] == ["line-3", "line-6"]
    assert result.problems == ["line 4: not a JSON object (array)", "line 5: not a JSON object (null)"]


def test_jsonl_with_no_usable_record_is_skipped_and_keeps_problems():
    result = read(jsonl("oops", {"n": 1}), ".jsonl")
    assert result.documents == []
    assert result.skipped == "no records with text"
    assert result.problems == ["line 1: invalid JSON (Expecting value)", "line 2: no text"]


def test_json_empty_array_is_skipped():
    assert read("[]", ".json") == ReadResult(documents=[], skipped="no records with text")


def test_duplicate_record_ids_are_made_unique():
    data = jsonl(
        {"id": "a", "text": "1"},
        {"id": "a", "text": "2"},
        {"id": "a~2", "text": "3"},
        {"id": 7, "text": "4"},
        {"id": "7", "text": "5"},
        {"id": "a", "text": "6"},
    )
    records = [d.record for d in read(data, ".jsonl").documents]
    assert records == ["a", "a~2", "a~2~2", "7", "7~2", "a~3"]


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"id": "faq-1", "text": "x"}, "faq-1"),
        ({"id": 42, "text": "x"}, "42"),
        ({"id": True, "text": "x"}, "line-1"),
        ({"id": 1.5, "text": "x"}, "line-1"),
        ({"id": ["a"], "text": "x"}, "line-1"),
        ({"id": "  ", "text": "x"}, "line-1"),
    ],
)
def test_record_key_is_the_id_field_when_it_is_a_string_or_integer(record, key):
    assert read_one(jsonl(record), ".jsonl").record == key


@pytest.mark.parametrize(
    ("record", "text"),
    [
        (
            {"question": "What is RAG?", "answer": "Retrieval first.", "text": "ignored"},
            "Q: What is RAG?\nA: Retrieval first.",
        ),
        ({"answer": "Only an answer"}, "answer: Only an answer"),
        ({"content": "second choice", "body": "third choice"}, "second choice"),
        ({"text": "", "passage": "empty text falls through"}, "empty text falls through"),
        ({"page_content": "LangChain style"}, "LangChain style"),
        ({"document": "last field"}, "last field"),
        ({"id": "x1", "author": "Ann", "note": "Prefers tea", "stars": 4}, "author: Ann\nnote: Prefers tea"),
    ],
)
def test_record_text_field_choice(record, text):
    assert read_one(jsonl(record), ".jsonl").text == text


def test_record_metadata_holds_small_scalars_but_not_text():
    record = {
        "id": "r1",
        "text": "Body",
        "title": "A Title",
        "lang": "en",
        "year": 2024,
        "score": 0.5,
        "draft": False,
        "type": "faq",
        "tags": ["x"],
        "extra": {"k": "v"},
        "long": "y" * 201,
        "missing": None,
        "ratio": float("nan"),
    }
    document = read_one(json.dumps(record), ".jsonl")
    assert document.metadata == {
        "type": "jsonl",
        "title": "A Title",
        "id": "r1",
        "lang": "en",
        "year": 2024,
        "score": 0.5,
        "draft": False,
        "record_type": "faq",
    }
    json.dumps(document.metadata, allow_nan=False)


def test_record_title_falls_back_to_name():
    document = read_one(jsonl({"name": "Widget", "description": "Does things"}), ".jsonl")
    assert document.metadata["title"] == "Widget"


def test_question_answer_fields_stay_out_of_metadata():
    document = read_one(jsonl({"question": "Why?", "answer": "Because.", "topic": "faq"}), ".jsonl")
    assert document.metadata == {"type": "jsonl", "topic": "faq"}


def test_archive_reads_are_capped_even_when_the_declared_sizes_pass():
    from ragtune.rag.ingest.readers.archive import Archive
    from ragtune.rag.ingest.readers.common import Skip

    archive = Archive(docx_inflating_to(1), "DOCX", ReadLimits(max_bytes=8 * 2**20))
    archive.limits = ReadLimits(max_bytes=2**19)  # as if the archive had declared half of what it holds
    with pytest.raises(Skip) as refused:
        archive.read("word/document.xml")
    assert refused.value.reason == (
        "too large uncompressed: this DOCX inflates to more than 0.5 MB (> 0.5 MB limit; raise max_file_mb)"
    )
