"""The page at ``/`` in headless Chromium (Debian's chromium + chromium-driver, through selenium)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import TrainedModel

from ai2text_hf.serving import BackgroundServer, ServeSettings, create_app

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"


@contextmanager
def headless_chromium(*flags: str) -> Iterator[object]:
    """A selenium driver of headless Chromium with a fake microphone: a beep, or the WAV file of
    ``--use-file-for-fake-audio-capture=PATH`` in ``flags``; a clean skip without Chromium."""
    webdriver = pytest.importorskip("selenium.webdriver")
    driver_path = shutil.which("chromedriver")
    if driver_path is None or shutil.which(CHROMIUM) is None:
        pytest.skip("needs Debian's chromium and chromium-driver (make test-slow installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The fake media flags give getUserMedia a synthetic microphone without a permission prompt.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        *flags,
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def server_url(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = ServeSettings(models_dir=tmp_path_factory.mktemp("runs"))
    with BackgroundServer(create_app(trained_model.model_dir, settings)) as server:
        yield server.url


def test_page_uploads_a_file_and_shows_transcript_with_word_timings(
    browser, server_url: str, trained_model: TrainedModel
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wav = trained_model.corpus_dir / trained_model.rows("test")[0]["file_path"]
    expected = httpx.post(
        f"{server_url}/transcribe", files={"audio": (wav.name, wav.read_bytes(), "audio/wav")}, timeout=60
    ).json()
    browser.get(server_url + "/")
    # The model list comes from GET /models.
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "run")
    browser.find_element(By.ID, "audio-file").send_keys(str(wav))
    browser.find_element(By.ID, "transcribe").click()
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "transcript").text.strip())
    assert browser.find_element(By.ID, "error").text == ""
    assert browser.find_element(By.ID, "transcript").text == expected["text"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#words tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [w["word"] for w in expected["words"]]
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert float(first[1].text) == pytest.approx(expected["words"][0]["start"], abs=0.01)
    assert float(first[2].text) == pytest.approx(expected["words"][0]["end"], abs=0.01)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_page_downloads_the_transcript_as_subtitles(
    browser, server_url: str, trained_model: TrainedModel, tmp_path: Path, fmt: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wav = trained_model.corpus_dir / trained_model.rows("test")[1]["file_path"]
    files = {"audio": (wav.name, wav.read_bytes(), "audio/wav")}
    expected = httpx.post(f"{server_url}/transcribe", files=files, data={"format": fmt}, timeout=60).text
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    browser.get(server_url + "/")
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "run")
    assert not browser.find_element(By.ID, "downloads").is_displayed()
    browser.find_element(By.ID, "audio-file").send_keys(str(wav))
    browser.find_element(By.ID, "transcribe").click()
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "downloads").is_displayed())
    browser.find_element(By.ID, f"download-{fmt}").click()
    target = tmp_path / f"{wav.stem}.{fmt}"
    WebDriverWait(browser, 60).until(lambda _: target.is_file() and target.stat().st_size > 0)
    assert target.read_text(encoding="utf-8") == expected
    assert browser.find_element(By.ID, "error").text == ""


def test_page_shows_the_servers_message_for_a_non_audio_file(
    browser, server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    notes = tmp_path_factory.mktemp("upload") / "notes.wav"
    notes.write_text("not audio at all", encoding="utf-8")
    browser.get(server_url + "/")
    browser.find_element(By.ID, "audio-file").send_keys(str(notes))
    browser.find_element(By.ID, "transcribe").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "error").text.strip())
    assert "Cannot decode 'notes.wav'" in browser.find_element(By.ID, "error").text


def test_page_records_from_the_microphone_and_transcribes_the_recording(browser, server_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server_url + "/")
    browser.find_element(By.ID, "record").click()
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "record").text == "Stop")
    time.sleep(1.5)
    browser.find_element(By.ID, "record").click()
    WebDriverWait(browser, 10).until(lambda b: "recorded" in b.find_element(By.ID, "recording-state").text)
    browser.find_element(By.ID, "transcribe").click()
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "summary").text.strip())
    assert browser.find_element(By.ID, "error").text == ""
    # The page encoded the recording as WAV, which the server decoded: its duration is the recording's.
    seconds = float(browser.find_element(By.ID, "summary").text.split(" s of audio")[0])
    assert 1.0 < seconds < 5.0


def test_api_docs_render_offline(browser, server_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server_url + "/docs")  # no network here: Swagger UI's scripts must come from the server
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text.replace("\u200b", "") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/transcribe", "/models/load", "/models/{name}"} <= paths
