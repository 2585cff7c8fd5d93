"""digitcore serve end to end in headless Chromium (Debian chromium + chromium-driver, Selenium).

A real MNIST test digit is traced onto the canvas with pointer events (one short stroke per
run of bright pixels in each row), and the page must show the digit the network reads,
ten probability bars and the 28x28 input; then Clear empties everything. Screenshots are
saved under the test's tmp_path. The browser only ever talks to the server on 127.0.0.1.
"""

import json
import shutil

import numpy as np
import pytest

import digitcore
from digitcore.datasets import load_mnist_mini
from digitcore.imaging import NoDigitError, preprocess_image, resize

from serving import running_server, serve_process

pytestmark = pytest.mark.browser

CANVAS = 280        # the page's canvas resolution (index.html)
LINE_WIDTH = 20     # app.js: SIZE / 14
SEND = 112          # app.js: the grid the page sends
CELL = CANVAS / 28  # one MNIST pixel on the canvas


def _find(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def _browser_or_skip():
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    chrome = _find("chromium", "chromium-browser")
    if chrome is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    driver = _find("chromedriver")
    if driver is None:
        pytest.skip("chromedriver is not installed (apt-get install chromium-driver)")
    return chrome, driver


def _network():
    (x, y), _ = load_mnist_mini()
    threads = digitcore.get_num_threads()
    digitcore.set_num_threads(1)
    try:
        net = digitcore.Network([784, 32, 10], seed=0)
        digitcore.Trainer(net, optimizer="adam", lr=3e-3, epochs=2, seed=0, verbose=0).fit(x, y)
    finally:
        digitcore.set_num_threads(threads)
    return net


def _strokes(img):
    """Horizontal strokes (x0, y0, x1, y1) in canvas pixels over each run of bright pixels."""
    out = []
    bright = img >= 128
    for r in range(28):
        c = 0
        while c < 28:
            if bright[r, c]:
                c0 = c
                while c + 1 < 28 and bright[r, c + 1]:
                    c += 1
                y = (r + 0.5) * CELL
                out.append(((c0 + 0.5) * CELL, y, (c + 0.5) * CELL, y))
            c += 1
    return out


def _render(strokes):
    """What the page draws for these strokes: black round-capped lines on white."""
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS] + 0.5
    ink = np.zeros((CANVAS, CANVAS), dtype=bool)
    for x0, y0, x1, y1 in strokes:
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else np.clip(((xx - x0) * dx + (yy - y0) * dy) / length2, 0, 1)
        ink |= (xx - (x0 + t * dx)) ** 2 + (yy - (y0 + t * dy)) ** 2 <= (LINE_WIDTH / 2) ** 2
    return np.where(ink, 255.0, 0.0)


def _pick_digit(net):
    """A test digit whose traced drawing this network reads correctly and confidently."""
    _, (x_te, y_te) = load_mnist_mini()
    for i in range(200):
        strokes = _strokes(x_te[i])
        if not 8 <= len(strokes) <= 60:
            continue
        sent = 255.0 - resize(_render(strokes), (SEND, SEND))
        try:
            img28 = preprocess_image(np.round(sent).astype(np.uint8))
        except NoDigitError:  # a trace the preprocessing refuses (the shape check may)
            continue
        proba = net.predict_proba(img28.reshape(1, -1))[0]
        if int(np.argmax(proba)) == y_te[i] and proba.max() > 0.9:
            return i, int(y_te[i]), strokes
    pytest.fail("no mnist-mini test digit was read confidently from its trace")


@pytest.fixture
def browser(tmp_path, monkeypatch):
    chrome, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager must never go online to look for drivers or report statistics
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_AVOID_STATS", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
                "--no-default-browser-check", "--disable-default-apps",
                "--window-size=1100,900", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                # anything not on loopback goes to a dead proxy (loopback bypasses proxies)
                "--proxy-server=127.0.0.1:9"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    except WebDriverException as exc:  # installed but unable to start: a real failure
        pytest.fail(f"Chromium did not start: {exc.msg}")
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


@pytest.fixture
def served():
    net = _network()
    with running_server(net) as srv:
        yield net, srv


def _draw(driver, canvas, strokes, kind="mouse"):
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    rect = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return {left: r.left, top: r.top, width: r.width, height: r.height};", canvas)
    sx, sy = rect["width"] / CANVAS, rect["height"] / CANVAS

    def at(x, y):
        return round(rect["left"] + x * sx), round(rect["top"] + y * sy)

    kinds = {"mouse": interaction.POINTER_MOUSE, "pen": interaction.POINTER_PEN,
             "touch": interaction.POINTER_TOUCH}
    builder = ActionBuilder(driver, mouse=PointerInput(kinds[kind], kind), duration=0)
    pointer = builder.pointer_action
    for x0, y0, x1, y1 in strokes:
        pointer.move_to_location(*at(x0, y0))
        pointer.pointer_down()
        if (x0, y0) != (x1, y1):
            pointer.move_to_location(*at((x0 + x1) / 2, y0))
            pointer.move_to_location(*at(x1, y1))
        pointer.pointer_up()
    builder.perform()


def _canvas_ink(driver, element_id, background):
    """Number of pixels of the canvas that differ from the background grey level."""
    return driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== arguments[1]) n++;"
        "return n;", element_id, background)


def test_draw_a_digit_and_clear(browser, served, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    net, srv = served
    index, label, strokes = _pick_digit(net)
    driver = browser
    wait = _open(driver, srv.url)
    wait.until(lambda d: "784-32-10" in d.find_element(By.ID, "model").text)
    canvas = driver.find_element(By.ID, "pad")
    assert _canvas_ink(driver, "pad", 255) == 0

    _draw(driver, canvas, strokes)
    wait.until(lambda d: d.find_element(By.ID, "digit").text.strip() == str(label),
               message=f"the page did not show {label} for mnist-mini test image {index}")
    bars = driver.find_elements(By.CSS_SELECTOR, "#bars li")
    assert len(bars) == 10
    widths = [float(b.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style")
                    .split("width:")[1].split("%")[0]) for b in bars]
    assert int(np.argmax(widths)) == label and abs(sum(widths) - 100) < 1
    top = driver.find_elements(By.CSS_SELECTOR, "#bars li.best")
    assert len(top) == 1 and top[0].get_attribute("data-digit") == str(label)
    assert top[0].get_attribute("aria-label").startswith(f"digit {label}: ")
    assert _canvas_ink(driver, "pad", 255) > 1000
    assert _canvas_ink(driver, "seen", 0) > 40          # the 28x28 input is shown
    assert "sure" in driver.find_element(By.ID, "confidence").text
    driver.save_screenshot(str(tmp_path / "serve-drawn.png"))

    # phone width: one column, nothing wider than the screen, canvas still square
    driver.set_window_size(390, 1600)
    wait.until(lambda d: d.execute_script("return window.innerWidth") <= 400)
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")
    box = canvas.rect
    assert abs(box["width"] - box["height"]) <= 1 and box["width"] <= 390
    driver.save_screenshot(str(tmp_path / "serve-phone.png"))
    driver.set_window_size(1100, 900)

    # Clear: a real button, the first stop of the Tab key, then clicked
    clear = driver.find_element(By.ID, "clear")
    assert clear.tag_name == "button" and clear.get_attribute("aria-label")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("id") == "clear"
    clear.click()
    wait.until(lambda d: d.find_element(By.ID, "digit").text.strip() == "–")
    wait.until(lambda d: d.execute_script(  # bars animate back to zero
        "return [...document.querySelectorAll('#bars .fill')]"
        ".every(f => f.getBoundingClientRect().width === 0)"))
    assert _canvas_ink(driver, "pad", 255) == 0
    assert _canvas_ink(driver, "seen", 0) == 0
    assert driver.find_elements(By.CSS_SELECTOR, "#bars li.best") == []
    assert "Cleared" in driver.find_element(By.ID, "status").text
    driver.save_screenshot(str(tmp_path / "serve-cleared.png"))

    # a finger and a pen draw too (pointer events of type touch and pen)
    for kind in ("touch", "pen"):
        _draw(driver, canvas, strokes, kind)
        wait.until(lambda d: d.find_element(By.ID, "digit").text.strip() == str(label),
                   message=f"drawing with {kind} pointer events did not give {label}")
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)  # Escape clears
        wait.until(lambda d: d.find_element(By.ID, "digit").text.strip() == "–")
        assert _canvas_ink(driver, "pad", 255) == 0

    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, json.dumps(severe, indent=1)
    print(f"screenshots in {tmp_path}")


# ---- the rough edges found by drawing as a new user (issue: the draw page) ----------------

def test_a_dot_says_too_small_without_a_failed_request(browser, served):
    """A click leaves a dot: the page says to draw bigger, as a status, not an error, and
    no request fails (the page asks with ?drawing=1, answered 200 with no digit; a 422
    was logged by the browser as a failed request, which the CI replica's loaded machine
    caught when a throttled request went out after a stroke's first dot)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _, srv = served
    driver = browser
    wait = _open(driver, srv.url)
    ActionChains(driver).move_to_element(driver.find_element(By.ID, "pad")).click().perform()
    wait.until(lambda d: "draw a bigger digit" in d.find_element(By.ID, "status").text)
    assert "error" not in driver.find_element(By.ID, "status").get_attribute("class")
    assert driver.find_element(By.ID, "digit").text.strip() == "–"
    assert _canvas_ink(driver, "pad", 255) > 0
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, json.dumps(severe, indent=1)


_FAKE_FETCH = """
window.__fake = arguments[0];
const real = window.fetch.bind(window);
window.fetch = (url, opts) => (/(^|\/)api\/predict/.test(url) && window.__fake)
  ? Promise.resolve(new Response(JSON.stringify(window.__fake),
                                 {status: 200, headers: {'Content-Type': 'application/json'}}))
  : real(url, opts);
"""


def _open(driver, url):
    """Load the page and wait until its ten bars are there; returns a 15 s wait on it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 15)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars li")) == 10)
    return wait


def _screen(driver, width, height=844):
    """Emulate a screen of width x height CSS pixels (a phone's below 500 px)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500})


def _rect(driver, element_id):
    return driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return {left: r.left, top: r.top, bottom: r.bottom, right: r.right};", element_id)


def _texts(driver):
    from selenium.webdriver.common.by import By

    best = driver.find_elements(By.CSS_SELECTOR, "#bars li.best .pct")
    return (driver.find_element(By.ID, "confidence").text,
            best[0].text if best else None)


def test_headline_and_bars_round_alike(browser, served):
    from selenium.webdriver.common.by import By

    net, srv = served
    _, label, strokes = _pick_digit(net)
    driver = browser
    wait = _open(driver, srv.url)
    canvas = driver.find_element(By.ID, "pad")
    _draw(driver, canvas, strokes)
    wait.until(lambda d: d.find_element(By.ID, "digit").text.strip() == str(label))
    head, bar = _texts(driver)
    assert head == f"{bar} sure", (head, bar)
    # what the issue saw: 99.8% in the headline, 100% on the bar; and the edges
    for p, shown in [(0.998, "99.8%"), (0.9996, ">99.9%"), (0.99949, "99.9%"), (1.0, "100.0%"),
                     (0.5004, "50.0%")]:
        rest = (1 - p) / 9
        probs = [rest] * 10
        probs[3] = p
        driver.execute_script(_FAKE_FETCH, {"digit": 3, "probabilities": probs,
                                            "input28": [0] * 784})
        _draw(driver, canvas, [(50, 50, 60, 60 + p)])
        wait.until(lambda d: _texts(d) == (f"{shown} sure", shown),
                   message=f"p={p}: headline/bar {_texts(driver)}, wanted {shown}")
        tiny = driver.find_element(By.CSS_SELECTOR, '#bars li[data-digit="0"] .pct').text
        assert tiny == ("<0.1%" if 0 < rest < 0.0005 else f"{rest * 100:.1f}%")


def test_model_line_shows_training_and_only_the_file_name(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from digitcore.modelio import read_model_info

    net = digitcore.Network([784, 16, 10], seed=0)
    path = tmp_path / "secret-folder" / "digits.safetensors"
    path.parent.mkdir()
    # the nesting that 'digitcore train --out' wrote until now
    net.save(path, metadata={"training": {"dataset": "mnist-mini", "test_accuracy": 0.9123}})
    with running_server(net, model_info=read_model_info(path)) as srv:
        browser.get(srv.url)
        wait = WebDriverWait(browser, 15)
        wait.until(lambda d: "784-16-10" in d.find_element(By.ID, "model").text)
        text = browser.find_element(By.ID, "model").text
        assert "trained on mnist-mini" in text and "test accuracy 91.2%" in text, text
        assert "(digits.safetensors)" in text and "secret-folder" not in text, text


def test_answer_is_cleared_when_the_server_stops(browser, tmp_path):
    net = _network()
    _, label, strokes = _pick_digit(net)
    net.save(tmp_path / "m.safetensors")
    # a real server process, so that stopping it closes its kept-alive connections too
    with serve_process([str(tmp_path / "m.safetensors"), "--port", "0"]) as (proc, url):
        _stale_after_stop(browser, proc, url, label, strokes, tmp_path)


def _stale_after_stop(driver, proc, url, label, strokes, tmp_path):
    from selenium.webdriver.common.by import By

    wait = _open(driver, url)
    canvas = driver.find_element(By.ID, "pad")
    clear_top = _rect(driver, "clear")["top"]
    _draw(driver, canvas, strokes)
    wait.until(lambda d: d.find_element(By.ID, "digit").text.strip() == str(label))
    assert _canvas_ink(driver, "seen", 0) > 40
    assert _rect(driver, "clear")["top"] == clear_top  # the status changed, Clear stayed
    proc.kill()
    proc.wait(10)
    _draw(driver, canvas, [(30, 250, 250, 250)])  # keep drawing: the old answer is stale
    wait.until(lambda d: "Could not reach" in d.find_element(By.ID, "status").text)
    assert driver.find_element(By.ID, "digit").text.strip() == "–"
    assert driver.find_element(By.ID, "confidence").text == ""
    assert driver.find_elements(By.CSS_SELECTOR, "#bars li.best") == []
    assert all(p.text == "–" for p in driver.find_elements(By.CSS_SELECTOR, "#bars .pct"))
    assert _canvas_ink(driver, "seen", 0) == 0
    assert _canvas_ink(driver, "pad", 255) > 1000  # the drawing itself is kept
    assert _rect(driver, "clear")["top"] == clear_top  # a two-line error: Clear stays put
    driver.save_screenshot(str(tmp_path / "serve-server-stopped.png"))


def test_status_messages_never_move_the_clear_button(browser, served):
    _, srv = served
    driver = browser
    _open(driver, srv.url)
    for width in (1100, 700, 390):
        _screen(driver, width, 844)
        tops, below = set(), set()
        for text in ["Draw a digit to start.", "Keep drawing, or press Clear to start again.",
                     "Could not reach the digitcore server. Is it still running?",
                     "the drawing is blank: draw a digit first"]:
            driver.execute_script("document.getElementById('status').textContent = "
                                  "arguments[0];", text)
            tops.add(_rect(driver, "clear")["top"])
            below.add(_rect(driver, "pad")["top"])
        assert len(tops) == 1 and len(below) == 1, (width, tops, below)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_brush_size_control(browser, served):
    from selenium.webdriver.common.by import By

    _, srv = served
    driver = browser
    _open(driver, srv.url)
    brush = driver.find_element(By.ID, "brush")
    assert brush.get_attribute("type") == "range" and brush.get_attribute("value") == str(
        LINE_WIDTH)
    assert "Brush" in driver.find_element(By.CSS_SELECTOR, "label[for=brush]").text
    canvas = driver.find_element(By.ID, "pad")
    line = [(70, 140, 210, 140)]
    inks = {}
    for width in (8, LINE_WIDTH, 36):
        driver.execute_script("const b = document.getElementById('brush'); b.value = "
                              "arguments[0]; b.dispatchEvent(new Event('input'));", width)
        _draw(driver, canvas, line)
        inks[width] = _canvas_ink(driver, "pad", 255)
        # a 140 px line with round caps: ~ 140 * w + pi w^2 / 4 pixels
        want = 140 * width + np.pi * width ** 2 / 4
        assert abs(inks[width] - want) < 0.1 * want + 60, (width, inks[width], want)
        driver.find_element(By.ID, "clear").click()
        assert driver.find_element(By.ID, "brush").get_attribute("value") == str(width)


def test_phone_keeps_the_answer_in_view(browser, served, tmp_path):
    from selenium.webdriver.common.by import By

    net, srv = served
    _, label, strokes = _pick_digit(net)
    driver = browser
    _screen(driver, 390, 844)
    wait = _open(driver, srv.url)
    assert driver.execute_script("return [innerWidth, innerHeight]") == [390, 844]
    canvas = driver.find_element(By.ID, "pad")
    _draw(driver, canvas, strokes, "touch")
    wait.until(lambda d: d.find_element(By.ID, "digit").text.strip() == str(label))
    assert driver.execute_script("return window.scrollY") == 0
    pad, digit, conf = (_rect(driver, i) for i in ("pad", "digit", "confidence"))
    for r in (digit, conf):  # on screen, below the drawing, not over it
        assert 0 <= r["top"] and r["bottom"] <= 844, r
        assert r["top"] >= pad["bottom"], (r, pad)
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")
    driver.save_screenshot(str(tmp_path / "serve-phone-390x844.png"))
    # a shorter screen (a browser's toolbars take ~150 px): still in view
    _screen(driver, 390, 690)
    r = _rect(driver, "digit")
    assert 0 <= r["top"] and r["bottom"] <= 690, r
    # scrolled to the end, the fixed answer bar hides none of the page
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    foot, answer = _rect(driver, "model"), driver.execute_script(
        "const r = document.querySelector('.answer').getBoundingClientRect(); return r.top")
    assert foot["bottom"] <= answer, (foot, answer)
    driver.save_screenshot(str(tmp_path / "serve-phone-scrolled.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


_POINTER = """
const pad = document.getElementById('pad');
const r = pad.getBoundingClientRect();
const cs = getComputedStyle(pad);
const bl = parseFloat(cs.borderLeftWidth), bt = parseFloat(cs.borderTopWidth);
// CSS pixels per canvas pixel, from the laid-out (fractional) size inside the border
const css = (r.width - bl - parseFloat(cs.borderRightWidth)) / pad.width;
function at(kind, x, y, opts) {
  pad.dispatchEvent(new PointerEvent(kind, Object.assign({
    pointerId: 7, bubbles: true, cancelable: true, button: 0, buttons: 1,
    clientX: r.left + bl + x * css, clientY: r.top + bt + y * css}, opts)));
}
function ink() {  // the dark pixels' centre and count
  const d = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
  let sx = 0, sy = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] < 128) { const p = i / 4; sx += p % pad.width + 0.5; sy += Math.floor(p / pad.width) + 0.5; n++; }
  }
  return [n ? sx / n : -1, n ? sy / n : -1, n];
}
"""


def test_strokes_land_under_the_pointer_inside_the_border(browser, served):
    """The canvas has a border: a point is measured from the drawing area inside it (it
    was measured from the border's outer edge and scaled by the border box, so strokes
    landed up to ~1.3 canvas pixels off)."""
    _, srv = served
    driver = browser
    _open(driver, srv.url)
    border = driver.execute_script("return document.getElementById('pad').clientLeft")
    assert border > 0  # (what makes the test mean something)
    # as laid out, and at a fractional CSS size (clientWidth rounds it to whole pixels)
    for size in (None, "401.6px"):
        if size:
            driver.execute_script("const p = document.getElementById('pad');"
                                  "p.style.width = p.style.height = arguments[0];", size)
        for x, y in ((40, 60), (250, 30), (140, 140), (270, 270)):
            driver.execute_script("document.getElementById('clear').click()")
            cx, cy, n = driver.execute_script(_POINTER + """
                at('pointerdown', arguments[0], arguments[1], {pointerType: 'mouse'});
                at('pointerup', arguments[0], arguments[1], {pointerType: 'mouse', buttons: 0});
                return ink();""", x, y)
            assert n > 100 and abs(cx - x) < 0.2 and abs(cy - y) < 0.2, (size, x, y, cx, cy)


def test_a_pens_eraser_rubs_out(browser, served):
    _, srv = served
    driver = browser
    _open(driver, srv.url)
    before, after = driver.execute_script(_POINTER + """
        at('pointerdown', 60, 140, {pointerType: 'pen'});
        at('pointermove', 220, 140, {pointerType: 'pen'});
        at('pointerup', 220, 140, {pointerType: 'pen', buttons: 0});
        const before = ink()[2];
        at('pointerdown', 60, 140, {pointerType: 'pen', button: 5, buttons: 32});
        at('pointermove', 220, 140, {pointerType: 'pen', buttons: 32});
        at('pointerup', 220, 140, {pointerType: 'pen', button: 5, buttons: 0});
        return [before, ink()[2]];""")
    assert before > 2000 and after == 0, (before, after)
