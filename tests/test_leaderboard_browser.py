"""The leaderboard in a real headless Chromium, opened from file://: clicking a header sorts the column
(numeric-aware, both directions), the paper-rows toggle works, images load, and nothing is logged as an
error.  Drives Chromium through the DevTools protocol with a minimal stdlib websocket client (no extra
packages).  Skipped only when no chromium binary is installed (apt-get install chromium)."""
import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from leaderboard.build import build
from metrics import keys
from common.store import Measurement, ResultsStore

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1280,900"]
FIDS = {"alpha": [30.0, 34.0], "beta": [9.5, 10.5], "gamma": [100.0, 120.0], "<b>delta</b>": [55.0, 57.0]}


class DevTools:
    """Just enough of RFC 6455 and the DevTools protocol: masked text frames out, (fragmented) frames in."""

    def __init__(self, ws_url: str, timeout: float = 15.0):
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._chunk()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head[:200]
        self.next_id, self.events = 0, []

    def _chunk(self) -> bytes:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("devtools websocket closed")
        return data

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._chunk()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, payload: bytes, opcode: int = 1) -> None:
        n, mask = len(payload), os.urandom(4)
        head = bytes([0x80 | opcode])
        head += bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536
                                                   else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _message(self) -> dict:
        parts = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            n = struct.unpack(">H", self._exact(2))[0] if n == 126 else (
                struct.unpack(">Q", self._exact(8))[0] if n == 127 else n)
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 8:
                raise ConnectionError("devtools websocket closed by the browser")
            if opcode == 9:
                self._send(payload, opcode=10)
                continue
            if opcode in (0, 1, 2):
                parts.append(payload)
                if b0 & 0x80:
                    return json.loads(b"".join(parts))

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}).encode())
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while time.monotonic() < deadline:
            msg = self._message()
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(f"no {method} within {timeout}s")

    def js(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def errors(self) -> list:
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(str(p.get("args")))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text"))
        return out


def _site(tmp_path: Path) -> Path:
    store = ResultsStore(tmp_path / "results.sqlite")
    for model, fids in FIDS.items():
        for seed, fid in enumerate(fids):
            rid = f"{model}-{seed}"
            store.add([Measurement(rid, model, "ablation", "digits", "cpu", seed, keys.FID, fid, "domain", 5000),
                       Measurement(rid, model, "ablation", "digits", "cpu", seed, keys.BPD, 2 + fid / 100, "", 360)])
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="c1", text="a claim",
                    status="reproduced", evidence={"fid": 9.5})
    return build(tmp_path / "results.sqlite", tmp_path / "site")


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the browser check needs it")
    profile = Path(tempfile.mkdtemp(prefix="lb-chromium-"))
    log = open(tmp_path / "chromium.log", "wb")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield _connect(proc, profile)
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def _connect(proc: subprocess.Popen, profile: Path) -> DevTools:
    port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        assert proc.poll() is None, "chromium exited at start-up"
        assert time.monotonic() < deadline, "chromium did not open its DevTools port within 30 s"
        time.sleep(0.05)
    port = int(port_file.read_text().split()[0])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # local only, never a proxy
    while True:
        targets = json.loads(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        pages = [t for t in targets if t.get("type") == "page"]
        if pages or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert pages, f"no page target: {targets}"
    return DevTools(pages[0]["webSocketDebuggerUrl"])


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)   # our own process group: chromium and its helpers
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


FID_COLUMN = """(() => {
  const t = [...document.querySelectorAll("figure.tbl")].find(f => f.querySelector("figcaption")
              .textContent.includes("extractor domain")).querySelector("table");
  const idx = [...t.tHead.rows[0].cells].findIndex(h => h.textContent.trim().startsWith("FID"));
  return [...t.tBodies[0].rows].map(r => [r.cells[2].textContent.trim(), Number(r.cells[idx].dataset.sort)]);
})()"""


def _click_header(dt: DevTools, label: str) -> None:
    """A real mouse click (Input.dispatchMouseEvent) at the centre of a header button of the FID table."""
    box = dt.js(f"""(() => {{
      const t = [...document.querySelectorAll("figure.tbl")].find(f => f.querySelector("figcaption")
                  .textContent.includes("extractor domain")).querySelector("table");
      const b = [...t.tHead.querySelectorAll("button.sort")].find(b => b.textContent.trim().startsWith("{label}"));
      b.scrollIntoView({{block: "center"}});
      const r = b.getBoundingClientRect();
      return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
    }})()""")
    for kind in ("mousePressed", "mouseReleased"):
        dt.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)


def test_sorting_toggle_images_and_no_console_errors(tmp_path, browser):
    index = _site(tmp_path)
    dt = browser
    t0 = time.monotonic()
    for domain in ("Runtime", "Log", "Page"):
        dt.call(f"{domain}.enable")
    dt.call("Page.navigate", url=index.resolve().as_uri())
    dt.wait_for("Page.loadEventFired")
    before = dt.js(FID_COLUMN)
    assert sorted(m for m, _ in before) == sorted(FIDS)

    _click_header(dt, "FID")
    asc = dt.js(FID_COLUMN)
    assert [v for _, v in asc] == sorted(sum(FIDS[m]) / 2 for m in FIDS)
    assert asc[0][0] == "beta" and asc[-1][0] == "gamma"
    _click_header(dt, "FID")
    desc = dt.js(FID_COLUMN)
    assert [v for _, v in desc] == sorted((v for _, v in asc), reverse=True)
    _click_header(dt, "Model")
    assert [m for m, _ in dt.js(FID_COLUMN)] == sorted(FIDS, key=str.lower)

    shown = dt.js("document.querySelectorAll('tr.paper').length")
    assert shown > 0      # the reference section is always there
    images = dt.js("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert images and all(images)

    dt.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "leaderboard.png").write_bytes(png)
    time.sleep(0.2)           # let late console messages arrive
    dt.js("1")
    assert dt.errors() == [], dt.errors()
    assert time.monotonic() - t0 < 60


def test_paper_rows_toggle_on_matching_table(tmp_path, browser):
    store = ResultsStore(tmp_path / "results.sqlite")
    store.add([Measurement("r", "gan", "ablation", "cifar10", "paper", 0, keys.FID, 30.0, "inception", 50000)])
    index = build(tmp_path / "results.sqlite", tmp_path / "site")
    dt = browser
    for domain in ("Runtime", "Log", "Page"):
        dt.call(f"{domain}.enable")
    dt.call("Page.navigate", url=index.resolve().as_uri())
    dt.wait_for("Page.loadEventFired")
    visible = """(() => { const f = [...document.querySelectorAll("figure.tbl")].find(f =>
        f.querySelector("figcaption").textContent.includes("extractor inception"));
      return [...f.querySelectorAll("tr.paper")].filter(r => r.offsetParent !== null).length; })()"""
    assert dt.js(visible) > 0
    dt.js("""document.querySelector("input.toggle-paper").click()""")
    assert dt.js(visible) == 0
    assert dt.errors() == [], dt.errors()


def test_configurations_render_as_labelled_rows(tmp_path, browser):
    """Two configurations of one model: two rows, each with its differing config key under the model name."""
    store = ResultsStore(tmp_path / "results.sqlite")
    for cfg, steps, seeds in (("cfgA", 600, (0, 1)), ("cfgB", 3, (0,))):
        for s in seeds:
            rid = f"avade-{cfg}-{s}"
            store.start_run(rid, model="avade", protocol="ablation", dataset="digits", budget="cpu", seed=s,
                            config={"model": "avade", "train": {"steps": steps}}, config_hash=cfg, group_key=cfg,
                            cell_key=f"{cfg}-{s}")
            store.commit_cell(rid, [Measurement(rid, "avade", "ablation", "digits", "cpu", s, keys.FID, 10.0 * steps,
                                                "domain", 500, config_hash=cfg, group_key=cfg, cell_key=f"{cfg}-{s}",
                                                extractor_id="dom")], checkpoint="last (step %d)" % steps)
    index = build(tmp_path / "results.sqlite", tmp_path / "site")
    dt = browser
    for domain in ("Runtime", "Log", "Page"):
        dt.call(f"{domain}.enable")
    dt.call("Page.navigate", url=index.resolve().as_uri())
    dt.wait_for("Page.loadEventFired")
    rows = dt.js("""[...document.querySelectorAll("tr.measured")].map(r => {
        const c = r.cells[2], s = c.querySelector("span.cfg");
        return [c.firstChild.textContent.trim(), s ? s.textContent : "", r.cells[5].textContent,
                s ? s.getBoundingClientRect().height > 0 : false]; })""")
    assert sorted(rows) == [["avade", "train.steps=3", "1", True], ["avade", "train.steps=600", "2", True]]
    _click_header(dt, "Model")
    assert [r[1] for r in dt.js("""[...document.querySelectorAll("tr.measured")].map(r =>
        [r.cells[2].firstChild.textContent.trim(), r.cells[2].querySelector("span.cfg").textContent])""")] == \
        ["train.steps=3", "train.steps=600"]
    assert dt.errors() == [], dt.errors()
