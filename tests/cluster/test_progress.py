"""progress(): a live bar, in a terminal or a notebook, that ends with the
finished and erred counts."""

from __future__ import annotations

import io
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from taskmill import Executor, progress
from taskmill.client.progress import bar_class, in_notebook

pytestmark = pytest.mark.timeout(60)


def maybe_fail(x: int) -> int:
    if x % 5 == 0:
        raise ValueError(x)
    return x


def test_progress_counts_finished_and_erred(inprocess_executor: Executor) -> None:
    futures = inprocess_executor.map(maybe_fail, range(50), pure=False)
    out = io.StringIO()
    counts = progress(futures, file=out)
    assert counts == {"finished": 40, "erred": 10, "cancelled": 0}
    text = out.getvalue()
    assert "50/50" in text and "erred=10" in text and "finished=40" in text


@pytest.fixture
def kernel(monkeypatch: Any) -> list[Any]:
    """A simulated Jupyter kernel: IPython's shell says it runs in an
    ``IPKernelApp``, and what would be displayed in the notebook is collected."""
    ipython = pytest.importorskip("IPython")
    notebook = pytest.importorskip("tqdm.notebook")
    if notebook.IProgress is None:
        pytest.skip("ipywidgets is not installed (it is in the test extra)")
    monkeypatch.setattr(ipython, "get_ipython", lambda: SimpleNamespace(config={"IPKernelApp": {}}))
    shown: list[Any] = []
    monkeypatch.setattr(notebook, "display", shown.append)
    return shown


def test_notebook_progress_is_a_widget_ending_with_the_counts(inprocess_executor: Executor,
                                                              kernel: list[Any]) -> None:
    from tqdm.notebook import tqdm_notebook

    assert in_notebook() and bar_class() is tqdm_notebook
    futures = inprocess_executor.map(maybe_fail, range(50), pure=False)
    counts = progress(futures, description="squares")
    assert counts == {"finished": 40, "erred": 10, "cancelled": 0}
    [widget] = kernel  # the bar was displayed in the notebook, once
    label, bar, text = widget.children
    assert "squares" in label.value
    assert (bar.value, bar.max) == (50, 50)
    assert "50/50" in text.value and "finished=40" in text.value and "erred=10" in text.value
    assert bar.style.bar_color == "red"  # erred tasks: a red bar


def test_outside_a_kernel_or_without_widgets_the_bar_is_text(monkeypatch: Any) -> None:
    from tqdm.std import tqdm

    if "IPython" in sys.modules:  # a terminal IPython is not a notebook
        monkeypatch.setattr(sys.modules["IPython"], "get_ipython", lambda: SimpleNamespace(config={}))
    assert not in_notebook() and bar_class() is tqdm
    notebook = pytest.importorskip("tqdm.notebook")
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(
        get_ipython=lambda: SimpleNamespace(config={"IPKernelApp": {}})))
    monkeypatch.setattr(notebook, "IProgress", None)  # a kernel without ipywidgets
    assert in_notebook() and bar_class() is tqdm
