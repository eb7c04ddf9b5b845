"""The page's live transcription in headless Chromium: a WAV file as the microphone (Chromium's fake capture),
the page's AudioWorklet turning it into 16 kHz PCM frames for the WebSocket ``/stream``, partials then finals.

A tiny random streaming model pins the browser side (capture, resampling to the rate the server expects, the
protocol, the display); the model the streaming recipe trains (``runs/streaming/model``, when present) checks
that the page reads real speech as a Python client sending the same recording does.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO
from test_serving_browser import headless_chromium
from test_stream_server import END, pcm_frames, talk, tiny_model

from ai2text_hf.metrics import error_rates
from ai2text_hf.serving import AccessSettings, BackgroundServer, ServeSettings, create_app

pytestmark = pytest.mark.slow

STREAM_SECONDS = 4.0
STREAMING_RUN = REPO / "runs" / "streaming" / "model"
DEMO = REPO / "data" / "demo"


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Noise bursts at 48 kHz (the rate a sound card gives, so the page has to resample)."""
    rng = np.random.default_rng(0)
    rate = 48_000
    bursts = np.repeat(rng.uniform(0.05, 0.4, 20), rate // 4)  # a loudness per quarter second
    wave = (rng.standard_normal(len(bursts)) * bursts).astype(np.float32)
    path = tmp_path_factory.mktemp("capture") / "speech.wav"
    sf.write(path, wave, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(capture: Path) -> Iterator[object]:
    with headless_chromium(f"--use-file-for-fake-audio-capture={capture}") as driver:
        yield driver


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = tiny_model(tmp_path_factory.mktemp("runs") / "live" / "model", streaming=True)
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        yield server.url


# Run in the page to play a browser that cannot connect a microphone to a 16 kHz AudioContext (older Firefox):
# the page then resamples in its AudioWorklet.
NO_16KHZ_CONTEXT = """
const Native = window.AudioContext;
window.AudioContext = class extends Native {
  constructor(options) {
    if (options && options.sampleRate) throw new DOMException("not supported", "NotSupportedError");
    super();
  }
};
"""


@pytest.mark.parametrize("resampler", ["browser", "worklet"])
def test_live_button_streams_the_microphone_showing_partials_then_finals(
    browser, server_url: str, resampler: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text.strip()

    browser.get(server_url + "/")
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "live")
    if resampler == "worklet":
        browser.execute_script(NO_16KHZ_CONTEXT)
    browser.find_element(By.ID, "live").click()
    WebDriverWait(browser, 30).until(lambda _: "listening" in text("live-state"))
    started = time.monotonic()
    # Text shows while the microphone is still on: a partial, or a final when an utterance already ended.
    WebDriverWait(browser, 15).until(lambda _: text("partial") or text("finals"))
    assert text("live") == "Stop"
    time.sleep(max(0.0, STREAM_SECONDS - (time.monotonic() - started)))
    browser.find_element(By.ID, "live").click()
    streamed = time.monotonic() - started
    WebDriverWait(browser, 30).until(lambda _: "done" in text("live-state"))
    assert text("error") == ""
    assert text("finals") and text("partial") == ""
    assert browser.find_elements(By.CSS_SELECTOR, "#words tbody tr")
    # The server counted the audio it got as 16 kHz: as long as the stream ran, so the page resampled right.
    seconds = float(text("live-state").split("done: ")[1].split(" s of audio")[0])
    assert streamed - 1.5 < seconds < streamed + 0.5
    assert text("live") == "Live"


def test_live_button_sends_the_pages_api_key_as_a_subprotocol(
    browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    key = "clé+/=secrète"  # characters a subprotocol cannot carry as they are: the page sends them in base64url
    model = tiny_model(tmp_path_factory.mktemp("runs") / "keyed" / "model", streaming=True)
    with BackgroundServer(create_app(model, ServeSettings(access=AccessSettings(api_key=key)))) as server:
        browser.get(server.url + "/")
        browser.find_element(By.ID, "api-key").send_keys(key + "\t")  # leaving the field lists the models
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "keyed")
        browser.find_element(By.ID, "live").click()
        WebDriverWait(browser, 30).until(lambda b: "listening" in b.find_element(By.ID, "live-state").text)
        time.sleep(1.5)
        browser.find_element(By.ID, "live").click()
        WebDriverWait(browser, 30).until(lambda b: "done" in b.find_element(By.ID, "live-state").text)
        assert browser.find_element(By.ID, "error").text == ""


def test_live_button_shows_why_a_model_cannot_stream(browser, tmp_path_factory: pytest.TempPathFactory) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model = tiny_model(tmp_path_factory.mktemp("runs") / "offline" / "model", streaming=False)
    with BackgroundServer(create_app(model, ServeSettings())) as server:
        browser.get(server.url + "/")
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "offline")
        browser.find_element(By.ID, "live").click()
        WebDriverWait(browser, 30).until(lambda b: "code 1008" in b.find_element(By.ID, "live-state").text)
        error = browser.find_element(By.ID, "error").text
    assert "cannot stream" in error and "recipes/streaming-cpu.yaml" in error
    assert browser.find_element(By.ID, "live").text == "Live"


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Three demo test utterances with a second of silence around each, at 48 kHz, and their transcript."""
    from ai2text_hf.data.audio import load_audio

    metadata = DEMO / "metadata.csv"
    if not (STREAMING_RUN / "config.json").is_file() or not metadata.is_file():
        pytest.skip("needs the streaming recipe's model (runs/streaming/model) and the demo corpus (make demo)")
    with metadata.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"][:3]
    silence = np.zeros(48_000, dtype=np.float32)
    waves = [load_audio(DEMO / row["file_path"], 48_000)[0] for row in rows]
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    sf.write(path, np.concatenate([silence, *(p for w in waves for p in (w, silence))]), 48_000, subtype="PCM_16")
    return path, " ".join(row["transcript"] for row in rows)


def test_live_transcription_in_the_page_reads_real_speech_as_well_as_a_python_client(
    speech: tuple[Path, str],
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from ai2text_hf.data.audio import load_audio

    speech, transcript = speech
    wave, duration = load_audio(speech)
    pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()
    with BackgroundServer(create_app(STREAMING_RUN, ServeSettings())) as server:
        expected = " ".join(
            m["text"]
            for m in talk(server.url.replace("http", "ws") + "/stream", [*pcm_frames(pcm), END]).of_type("final")
        )
        with headless_chromium(f"--use-file-for-fake-audio-capture={speech}%noloop") as browser:
            browser.get(server.url + "/")
            WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "model").get_attribute("value"))
            browser.find_element(By.ID, "live").click()
            WebDriverWait(browser, 30).until(lambda b: "listening" in b.find_element(By.ID, "live-state").text)
            time.sleep(duration + 1.0)
            browser.find_element(By.ID, "live").click()
            WebDriverWait(browser, 60).until(lambda b: "done" in b.find_element(By.ID, "live-state").text)
            heard = browser.find_element(By.ID, "finals").text.strip()
            assert browser.find_element(By.ID, "error").text == ""
    assert expected and heard
    # The page's audio starts at another offset (the chunk grid falls elsewhere) and went through the browser's
    # resampler, so its text differs (by up to 8 points of CER in trials, with the 31 % CER model of the streaming
    # recipe's first run); a broken capture or resampling reads nothing right (CER near 100 %).
    assert error_rates([transcript], [heard])["cer"] <= error_rates([transcript], [expected])["cer"] + 0.15
