"""benchmarks/prose.py counts what a reader reads: prose, not code blocks, tables, comments or headings."""

from __future__ import annotations

import importlib.util
import sys

from workbook_utils.config import project_root


def _prose():
    spec = importlib.util.spec_from_file_location("prose", project_root() / "benchmarks" / "prose.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["prose"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


CELL = """## 2. A section

<!-- nav -->
The first sentence has `inline code` and [a link](https://example.com/long/path). Is this the second? Yes.
It goes on here.

- an item, which is a sentence;
- another one.

```python
print("code is not prose. Not at all.")
```

| a | table |
|---|---|
"""


def test_prose_is_the_text_a_reader_reads():
    prose = _prose()
    paragraphs = prose.prose_of(CELL)
    assert paragraphs == ["The first sentence has `inline code` and a link. Is this the second? Yes. It goes on here.",
                          "an item, which is a sentence;", "another one."]
    assert prose.sentences(paragraphs[0]) == ["The first sentence has `inline code` and a link.", "Is this the second?",
                                              "Yes.", "It goes on here."]
    assert prose.words(paragraphs[0]) == 17  # inline code is one word


def test_the_report_names_the_limits_it_measures_against(tmp_path):
    import nbformat

    prose = _prose()
    long = "word " * 40
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"{long}. Short one.\n\n" + "Two. " * 5),
                                         nbformat.v4.new_code_cell("x = 1")])
    path = tmp_path / "99_synthetic.ipynb"
    nbformat.write(nb, path)
    report = prose.measure(path)
    assert report.cell_words == [(0, 47)] and report.long_paragraphs == 1 and report.long_sentences[0][:2] == (40, 0)
    assert "1 over 30 words; 1 paragraphs over 4 sentences" in prose.show(report, 3)
