"""The headless-Chromium page checker (tests/bench/_browser.py) that the HTML report's browser test relies on."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from pathlib import Path

import pytest

from tests.bench._browser import check_page, find_chromium

if find_chromium() is None:
    pytest.skip(
        "chromium not found (scripts/install_chromium.sh installs Debian's chromium); "
        "set SOFTLABELS_CHROMIUM to use another Chromium-family browser",
        allow_module_level=True,
    )

# Both checks start a fresh browser; each takes about a second here, so this bound only catches a hang.
TIMEOUT = 30.0


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid single-colour RGB PNG, built by hand (signature, IHDR, IDAT, IEND chunks)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))  # filter type 0 per row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def test_good_page_has_no_errors_and_all_images(tmp_path: Path) -> None:
    red, blue = data_uri(png_bytes(7, 5, (255, 0, 0))), data_uri(png_bytes(3, 4, (0, 0, 255)))
    page = tmp_path / "good.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Good report \u2713</title></head><body>"
        f"<h1>ok</h1><img alt='a' src='{red}'><p>text</p><img alt='b' src='{blue}'>"
        "<script>console.log('just a log line'); console.warn('a warning is not an error');</script>"
        "</body></html>",
        encoding="utf-8",
    )
    start = time.monotonic()
    report = check_page(page, timeout=TIMEOUT)
    assert time.monotonic() - start < TIMEOUT
    assert report.console_errors == []
    assert report.exceptions == []
    assert report.title == "Good report \u2713"
    assert [(im["complete"], im["width"], im["height"]) for im in report.images] == [(True, 7, 5), (True, 3, 4)]
    assert [im["src_start"] for im in report.images] == [red[:40], blue[:40]]
    assert red[:40] == "data:image/png;base64,iVBORw0KGgoAAAANSU"  # the PNG signature and IHDR length
    assert report.broken_images == []


def test_bad_page_reports_console_error_exception_and_broken_image(tmp_path: Path) -> None:
    good = data_uri(png_bytes(2, 2, (0, 128, 0)))
    page = tmp_path / "bad.html"
    page.write_text(
        "<!doctype html><html><head><title>Bad report</title></head><body>"
        f"<img src='{good}'>"
        "<script>console.error('boom');</script>"
        "<script>throw new Error('kaput');</script>"
        "<img src='data:image/png;base64,AAAA'>"
        "<script>console.assert(1 === 2, 'assertion about', 3);</script>"
        "</body></html>",
        encoding="utf-8",
    )
    report = check_page(page, timeout=TIMEOUT)
    assert report.title == "Bad report"
    assert "boom" in report.console_errors
    assert "assertion about 3" in report.console_errors
    assert len(report.exceptions) == 1
    assert report.exceptions[0].startswith("Uncaught Error: kaput")
    assert [im["width"] for im in report.images] == [2, 0]
    broken = {"src_start": "data:image/png;base64,AAAA", "complete": True, "width": 0, "height": 0}
    assert report.broken_images == [broken]
