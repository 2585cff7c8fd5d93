// digitcore serve: draw on the canvas, send it to /api/predict, show what comes back.
// Plain JavaScript, no libraries. The drawing is sent as grey pixels (the canvas scaled
// down to SEND x SEND), so the server needs no image library; it preprocesses them the
// same way as digitcore.preprocess_image.
"use strict";

(function () {
  const THROTTLE_MS = 150;     // at most one prediction request per 150 ms while drawing
  const TIMEOUT_MS = 15000;    // a request unanswered this long is given up, and said so
                               // (after the server's own 10 s wait for a free slot: 503)
  const SEND = 112;            // side of the pixel grid sent to the server
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d", { willReadFrequently: true });
  const SIZE = pad.width;
  const seen = document.getElementById("seen");
  const seenCtx = seen.getContext("2d");
  const digitOut = document.getElementById("digit");
  const confidenceOut = document.getElementById("confidence");
  const statusOut = document.getElementById("status");
  const barsList = document.getElementById("bars");
  const clearButton = document.getElementById("clear");
  const brush = document.getElementById("brush");
  const resultPanel = document.querySelector(".result-panel");
  const small = document.createElement("canvas");
  small.width = SEND;
  small.height = SEND;
  const smallCtx = small.getContext("2d", { willReadFrequently: true });

  let hasInk = false;
  let activePointer = null;
  let last = null;
  let timer = null;
  let seq = 0;                 // answers to older requests are ignored
  let inflight = null;         // AbortController of the request in flight

  // One rounding for the headline and the bars: one decimal, and never "100%" or "0%"
  // for a probability that is not exactly 1 or 0 (99.96% reads ">99.9%").
  function percent(p) {
    if (p >= 0.9995 && p < 1) return ">99.9%";
    if (p > 0 && p < 0.0005) return "<0.1%";
    return (p * 100).toFixed(1) + "%";
  }

  // ---- bars ----------------------------------------------------------------------------
  const bars = [];
  function buildBars(n) {
    barsList.textContent = "";
    bars.length = 0;
    for (let d = 0; d < n; d++) {
      const li = document.createElement("li");
      li.dataset.digit = String(d);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = String(d);
      label.setAttribute("aria-hidden", "true");
      const track = document.createElement("span");
      track.className = "track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      track.appendChild(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.setAttribute("aria-hidden", "true");
      li.append(label, track, pct);
      barsList.appendChild(li);
      bars.push({ li, fill, pct });
    }
    showBars(null);
  }
  function showBars(probabilities) {
    let best = -1;
    if (probabilities) {
      best = probabilities.indexOf(Math.max(...probabilities));
    }
    bars.forEach((bar, d) => {
      const p = probabilities ? probabilities[d] : 0;
      const text = probabilities ? percent(p) : "–";
      bar.fill.style.width = (p * 100).toFixed(2) + "%";
      bar.pct.textContent = text;
      bar.li.classList.toggle("best", d === best);
      bar.li.setAttribute("aria-label", probabilities ? `digit ${d}: ${text}` : `digit ${d}: no prediction yet`);
    });
  }

  // ---- drawing -------------------------------------------------------------------------
  function resetPad() {
    ctx.globalCompositeOperation = "source-over";
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, SIZE, SIZE);
    ctx.strokeStyle = "#000000";
    ctx.fillStyle = "#000000";
    ctx.lineWidth = brushWidth();
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    hasInk = false;
  }
  // The brush's width in canvas pixels; the default, 20 (SIZE / 14), is about the stroke
  // width of an MNIST digit drawn to fill the box. A small digit wants a thinner brush.
  function brushWidth() {
    const w = Number(brush.value);
    return Number.isFinite(w) && w > 0 ? w : SIZE / 14;
  }
  brush.addEventListener("input", () => {
    ctx.lineWidth = brushWidth();
    brush.setAttribute("aria-valuetext", `${brush.value} pixels`);
  });
  function clearSeen() {
    seenCtx.fillStyle = "#000000";
    seenCtx.fillRect(0, 0, seen.width, seen.height);
  }
  // The pointer in canvas pixels: measured from the drawing area inside the canvas's
  // border and padding, scaled by that area's size (fractional CSS pixels, as laid out),
  // not the border box's.
  function point(e) {
    const r = pad.getBoundingClientRect();
    const cs = getComputedStyle(pad);
    const px = (name) => parseFloat(cs[name]) || 0;
    const left = px("borderLeftWidth") + px("paddingLeft");
    const top = px("borderTopWidth") + px("paddingTop");
    const w = r.width - left - px("borderRightWidth") - px("paddingRight");
    const h = r.height - top - px("borderBottomWidth") - px("paddingBottom");
    return { x: (e.clientX - r.left - left) * SIZE / w, y: (e.clientY - r.top - top) * SIZE / h };
  }
  function dot(p) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  }
  function segment(a, b) {
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
  }

  // A pen's eraser end (button 5, or buttons bit 32) rubs out in white; anything else
  // draws in black.
  function isEraser(e) {
    return e.pointerType === "pen" && (e.button === 5 || (e.buttons & 32) !== 0);
  }
  function setInk(erase) {
    ctx.strokeStyle = erase ? "#ffffff" : "#000000";
    ctx.fillStyle = ctx.strokeStyle;
  }

  pad.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    if (activePointer !== null) return;   // one stroke at a time (ignore a second finger)
    activePointer = e.pointerId;
    try { pad.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
    const erase = isEraser(e);
    setInk(erase);
    last = point(e);
    dot(last);
    if (!erase) hasInk = true;
    schedule();
  });
  pad.addEventListener("pointermove", (e) => {
    if (e.pointerId !== activePointer) return;
    e.preventDefault();
    const events = (e.getCoalescedEvents && e.getCoalescedEvents().length) ? e.getCoalescedEvents() : [e];
    for (const ev of events) {
      const p = point(ev);
      segment(last, p);
      last = p;
    }
    schedule();
  });
  function endStroke(e) {
    if (e.pointerId !== activePointer) return;
    activePointer = null;
    last = null;
    schedule();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  pad.addEventListener("lostpointercapture", endStroke);
  pad.addEventListener("contextmenu", (e) => e.preventDefault());

  // ---- prediction ----------------------------------------------------------------------
  function schedule() {
    if (timer === null) timer = setTimeout(() => { timer = null; predict(); }, THROTTLE_MS);
  }
  function greyPixels() {
    smallCtx.imageSmoothingEnabled = true;
    smallCtx.imageSmoothingQuality = "high";
    smallCtx.fillStyle = "#ffffff";
    smallCtx.fillRect(0, 0, SEND, SEND);
    smallCtx.drawImage(pad, 0, 0, SEND, SEND);
    const rgba = smallCtx.getImageData(0, 0, SEND, SEND).data;
    const grey = new Array(SEND * SEND);
    for (let i = 0, j = 0; j < grey.length; i += 4, j++) {
      grey[j] = Math.round(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]);
    }
    return grey;
  }
  function setStatus(text, isError) {
    statusOut.textContent = text;
    statusOut.classList.toggle("error", Boolean(isError));
  }
  async function predict() {
    if (!hasInk) return;
    const mine = ++seq;
    if (inflight) inflight.abort();
    const controller = new AbortController();
    inflight = controller;
    let timedOut = false;
    const watchdog = setTimeout(() => { timedOut = true; controller.abort(); }, TIMEOUT_MS);
    const body = JSON.stringify({ pixels: greyPixels(), width: SEND, height: SEND });
    try {
      // ?drawing=1: a drawing with nothing to read yet (a dot, too small) is answered
      // with digit null, not a 422 (a normal state while drawing, not an error)
      const resp = await fetch("api/predict?drawing=1", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body,
        signal: controller.signal,
      });
      const type = resp.headers.get("Content-Type") || "";
      if (!type.startsWith("application/json")) {
        // not digitcore's answer (a proxy's error page, say): say what came back
        if (mine !== seq) return;
        clearResult();
        const what = [resp.status, resp.statusText].filter(Boolean).join(" ");
        setStatus(`The server answered ${what} without a prediction.`, true);
        return;
      }
      const data = await resp.json();
      if (mine !== seq) return;
      if (!resp.ok || data.digit === null) {
        // nothing to read yet, or an error: the answer shown was for an earlier
        // drawing. Either way no digit, not a stale one.
        clearResult();
        setStatus(resp.ok ? data.message : (data.error || `The server answered ${resp.status}.`),
                  !resp.ok);
        return;
      }
      show(data);
      setStatus("Keep drawing, or press Clear to start again.", false);
    } catch (err) {
      if (mine !== seq || (err.name === "AbortError" && !timedOut)) return;
      clearResult();
      setStatus(timedOut ? `The digitcore server did not answer within ${TIMEOUT_MS / 1000} s. Is it busy?`
                         : "Could not reach the digitcore server. Is it still running?", true);
    } finally {
      clearTimeout(watchdog);
      if (inflight === controller) inflight = null;
    }
  }
  function show(data) {
    const p = data.probabilities;
    if (bars.length !== p.length) buildBars(p.length);
    digitOut.textContent = String(data.digit);
    digitOut.classList.remove("empty");
    confidenceOut.textContent = `${percent(p[data.digit])} sure`;
    resultPanel.classList.remove("no-result");
    document.body.dataset.prediction = String(data.digit);
    showBars(p);
    const img = seenCtx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = data.input28[i];
      img.data[4 * i] = v;
      img.data[4 * i + 1] = v;
      img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    seenCtx.putImageData(img, 0, 0);
  }
  // No answer: the dash, empty bars and a black preview (also when a request fails,
  // so an answer about an earlier drawing never stays up next to the error)
  function clearResult() {
    clearSeen();
    digitOut.textContent = "–";
    digitOut.classList.add("empty");
    confidenceOut.textContent = "";
    delete document.body.dataset.prediction;
    resultPanel.classList.add("no-result");
    showBars(null);
  }
  function clearAll() {
    seq++;
    if (inflight) inflight.abort();
    if (timer !== null) { clearTimeout(timer); timer = null; }
    resetPad();
    clearResult();
    setStatus("Cleared. Draw a digit to start.", false);
  }
  clearButton.addEventListener("click", clearAll);
  document.addEventListener("keydown", (e) => {
    // Escape clears too, unless a text field has focus (there is none on this page today)
    if (e.key === "Escape" && !(e.target instanceof HTMLInputElement)) clearAll();
  });

  // ---- model description -----------------------------------------------------------------
  async function loadModel() {
    const out = document.getElementById("model");
    try {
      const resp = await fetch("api/model");
      const m = await resp.json();
      const parts = [`Model: ${m.architecture}` + (m.file ? ` (${m.file})` : ""),
                     `${m.n_params.toLocaleString("en")} parameters`];
      const t = m.training;
      if (t && typeof t === "object") {
        if (t.dataset) parts.push(`trained on ${t.dataset}`);
        if (typeof t.test_accuracy === "number") parts.push(`test accuracy ${(t.test_accuracy * 100).toFixed(1)}%`);
      }
      parts.push(`digitcore ${m.digitcore_version}`);
      out.textContent = parts.join(" · ");
      if (m.layer_sizes && bars.length !== m.layer_sizes[m.layer_sizes.length - 1]) {
        buildBars(m.layer_sizes[m.layer_sizes.length - 1]);
      }
    } catch (_) {
      out.textContent = "Model: could not load its description.";
    }
  }

  buildBars(10);
  resetPad();
  clearSeen();
  loadModel();
})();
