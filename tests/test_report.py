"""report.html: written at the end of a run, rewritten by `cnnkit report`, self-contained and escaped.

The run trains on an image folder whose class and file names are HTML: they must appear on the page
as text, never as tags. The page is read back with html.parser, and rendered in headless Chromium
when one is installed (Debian's `chromium`; the test skips without it).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import assert_clean_failure, run_cnnkit

SCRIPT = "<script>alert(1)<script>"  # a folder name cannot hold the "/" of </script>
IMG = "<img src=x onerror=alert(1)>"
FILE = '<b>"{}" & co.png'  # every file is named so: whichever is a mistake shows one


class Page(HTMLParser):
    """The tags, attributes and text of a page, as a browser's parser reads them."""

    def __init__(self, source: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        self.feed(source)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def named(self, tag: str) -> list[dict]:
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """One real run, through the installed command, on 2 classes x 12 digits named as HTML."""
    from PIL import Image

    from cnnkit.data.catalog import load_mnist_sample

    root = tmp_path_factory.mktemp("report")
    splits, _ = load_mnist_sample()
    images, labels = splits["train"].images, splits["train"].labels
    folders = {7: root / "photos" / SCRIPT, 1: root / "photos" / IMG}
    for digit, folder in folders.items():
        folder.mkdir(parents=True)
        for n, index in enumerate((labels == digit).nonzero().flatten()[:12].tolist()):
            Image.fromarray(images[index, 0].numpy()).save(folder / FILE.format(n))
    result = run_cnnkit("train", "perceptron", "--dataset", root / "photos", "--epochs", "1", "--val-split", "0.5",
                        "--device", "cpu", "--out", root / "runs", "--name", "run", "--seed", "1", cwd=root)
    assert result.returncode == 0, result.stderr
    run = Path(result.stdout.strip().splitlines()[-1])
    assert "wrote the run report to" in result.stderr
    return run


def check_page(path: Path) -> Page:
    source = path.read_text(encoding="utf-8")
    page = Page(source)
    names = [tag for tag, _ in page.tags]
    # The names are text on the page, never markup: no script, no element from a name, no handler.
    assert "script" not in names and names.count("b") == sum(1 for _ in page.named("figcaption"))
    assert not any(key.startswith("on") for _, attrs in page.tags for key in attrs)
    assert SCRIPT in page.text and IMG in page.text
    mistakes = page.text.split("Most confident mistakes")[1].split("Configuration")[0]
    assert '<b>"' in mistakes and '" & co.png' in mistakes  # the file names, as text
    # Self-contained: every image is an inlined PNG, nothing is fetched.
    assert not any("href" in attrs for _, attrs in page.tags)
    images = page.named("img")
    assert len(images) >= 3
    for attrs in images:
        assert attrs["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(attrs["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for heading in ("Training curves", "Confusion matrix (val split)", "Per class", "Most confident mistakes",
                    "Configuration"):
        assert heading in page.text
    assert '"model": "perceptron"' in page.text and "balanced accuracy" in page.text
    return page


def test_a_run_ends_with_its_report_and_names_are_escaped(hostile_run):
    page = check_page(hostile_run / "report.html")
    rows = page.text.split("Per class")[1].split("Most confident")[0]
    assert SCRIPT in rows and IMG in rows and "macro avg" in rows
    assert len(page.named("title")) == 1 and "perceptron on photos" in page.text


def test_report_command_writes_it_again(hostile_run, tmp_path):
    run = Path(shutil.copytree(hostile_run, tmp_path / "run"))
    (run / "report.html").unlink()
    result = run_cnnkit("report", run, "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run / "report.html") and result.stderr == ""
    check_page(run / "report.html")


def test_report_of_what_is_not_a_run_is_one_error(tmp_path):
    result = run_cnnkit("report", tmp_path, cwd=tmp_path)
    assert "not a run directory" in assert_clean_failure(result.returncode, result.stderr, 1)[0]


def test_the_page_renders_in_headless_chromium(hostile_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    from PIL import Image

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    url = (hostile_run / "report.html").resolve().as_uri()
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "<script" not in dom and "&lt;script&gt;alert(1)&lt;script&gt;" in dom and "<figcaption>" in dom
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1000,1800", url],
                   capture_output=True, timeout=120)
    with Image.open(shot) as image:
        grey = image.convert("L")
        dark = sum(grey.histogram()[:128])
    # Text, figures and thumbnails drew: a page of mostly white with a good share of dark pixels.
    assert dark > 0.02 * grey.width * grey.height
