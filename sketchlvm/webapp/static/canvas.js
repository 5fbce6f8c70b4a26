// SketchLVM stroke canvas: the body of gr.HTML's js_on_load (gets element, props, trigger, watch).
//
// Records each stroke as [xs, ys, ts] (Quick, Draw! raw format: canvas units, ms since the drawing's
// first point), draws it locally with no round trip, and sends the whole stroke list as JSON once per
// change (pen-up, undo, redo, clear) with trigger('input'). A value set by the server (an example)
// is drawn as it comes; the value this script sent itself is not redrawn.
//
// Live (props.live): while the pen is down it also sends the drawing so far, as
// {"drawing": [...], "partial": true}, when the pen pauses (PAUSE_MS without a move) and at most every
// EVERY_MS while it keeps moving, never while a search is in flight (a rest that comes then is sent the
// moment the answer arrives), and only when the drawing has grown by GROWTH of the ink last sent: a
// stroke that adds little since the last search costs no encode (real Quick, Draw! drawings pause often
// mid-stroke; docs/app.md has the counts). A mid-stroke search that a busy server lets go
// (webapp/busy.py) leaves the page waiting, so the stroke sends no more until pen-up. Pen-up sends the
// finished drawing as before. Mouse, pen and finger are all pointer events: each draws and sends alike.
(() => {
  const UNITS = Number(props.units);           // the canvas is UNITS x UNITS canvas units
  const WIDTH_RATIO = Number(props.width_ratio); // stroke width / drawing extent, as the renderer draws
  const MIN_WIDTH = Number(props.min_width);
  const LIVE = props.live === true || props.live === "true";
  const PAUSE_MS = Number(props.pause_ms) || 100;
  const EVERY_MS = Number(props.every_ms) || 1000;
  const GROWTH = Number(props.growth) || 0;
  const canvas = element.querySelector("canvas");
  const ctx = canvas.getContext("2d");
  const frame = element.querySelector(".sketchlvm-canvas-frame");
  const buttons = {
    undo: element.querySelector("[data-action=undo]"),
    redo: element.querySelector("[data-action=redo]"),
    clear: element.querySelector("[data-action=clear]"),
  };
  let strokes = [];   // [[xs, ys, ts], ...]
  let undone = [];    // actions that redo re-applies
  let done = [];      // actions that undo reverts: {add: stroke} or {clear: strokes}
  let current = null; // the stroke being drawn
  let pointer = null; // its pointerId
  let t0 = null;      // time of the drawing's first point
  let sent = props.value || "";
  let pauseTimer = null; // fires when the pen rests
  let lastPartial = 0;   // when the drawing so far was last sent (or the stroke began)
  let sentInk = 0;       // ink (total line length, canvas units) of the drawing last sent
  let strokesInk = 0;    // ink of the finished strokes
  let currentInk = 0;    // ink of the stroke being drawn
  let waiting = false;   // a rest came while a search was in flight: send when its answer arrives
  // Shared with answer.js and request.js: the page's request numbers and what the canvas holds.
  const page = (window.SketchLVMPage = window.SketchLVMPage || { seq: 0, floor: 0 });

  function resize() {
    // Backing store at device pixels, drawing in canvas units: sharp at any page width.
    const side = Math.max(1, Math.round(canvas.getBoundingClientRect().width * (window.devicePixelRatio || 1)));
    if (canvas.width !== side) {
      canvas.width = side;
      canvas.height = side;
      redraw();
    }
  }

  function lineWidth(extraStroke) {
    // The renderer scales a drawing to fit and draws lines WIDTH_RATIO of its extent wide.
    let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (const s of extraStroke ? strokes.concat([extraStroke]) : strokes) {
      for (let i = 0; i < s[0].length; i++) {
        minX = Math.min(minX, s[0][i]); maxX = Math.max(maxX, s[0][i]);
        minY = Math.min(minY, s[1][i]); maxY = Math.max(maxY, s[1][i]);
      }
    }
    const extent = Math.max(maxX - minX, maxY - minY, 0);
    return Math.max(MIN_WIDTH, extent * WIDTH_RATIO);
  }

  function setup(width) {
    const scale = canvas.width / UNITS;
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineWidth = width;
  }

  function drawStroke(s) {
    const [xs, ys] = s;
    if (xs.length === 1) {
      ctx.beginPath();
      ctx.arc(xs[0], ys[0], ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(xs[0], ys[0]);
    for (let i = 1; i < xs.length; i++) ctx.lineTo(xs[i], ys[i]);
    ctx.stroke();
  }

  function redraw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    setup(lineWidth(current));
    for (const s of strokes) drawStroke(s);
    if (current) drawStroke(current);
  }

  function refreshButtons() {
    buttons.undo.disabled = done.length === 0;
    buttons.redo.disabled = undone.length === 0;
    buttons.clear.disabled = strokes.length === 0;
    frame.classList.toggle("sketchlvm-empty", strokes.length === 0 && !current);
  }

  function inkOf(s) {
    let ink = 0;
    for (let i = 1; i < s[0].length; i++) ink += Math.hypot(s[0][i] - s[0][i - 1], s[1][i] - s[1][i - 1]);
    return ink;
  }

  function recount() {
    strokesInk = strokes.reduce((sum, s) => sum + inkOf(s), 0);
  }

  function emit(value, ink) {
    sent = value;
    sentInk = ink;
    props.value = sent;
    // The drawing is the page's query now: results shown so far answer an older one (answer.js).
    page.strokes = sent;
    if (page.queryChanged) page.queryChanged();
    trigger("input");
  }

  function send() {
    refreshButtons();
    recount();
    emit(strokes.length ? JSON.stringify(strokes) : "", strokesInk);
  }

  function sendPartial() {
    // The drawing so far, the stroke in progress included (undo history untouched). Not while a search
    // is still in flight: it would only wait behind it (and cost an encode nobody sees); the pen that
    // still rests is sent the moment that answer arrives (page.answered, called by answer.js). Not when
    // the drawing has grown by less than GROWTH of the ink last sent: its results would barely change.
    clearTimeout(pauseTimer);
    pauseTimer = null;
    waiting = false;
    if (!current || current[0].length < 2) return;
    if (page.waitingSince != null) {
      waiting = true;
      return;
    }
    const ink = strokesInk + currentInk;
    if (ink - sentInk < GROWTH * sentInk) {
      page.partialSkipped = (page.partialSkipped || 0) + 1; // benchmarks count these
      page.skippedAt = performance.now();
      return;
    }
    lastPartial = performance.now();
    const value = JSON.stringify({ drawing: strokes.concat([current]), partial: true });
    if (value !== sent) emit(value, ink);
  }

  page.answered = () => {
    if (waiting && current) sendPartial();
  };

  function pendown() {
    lastPartial = performance.now();
    currentInk = 0;
    waiting = false;
  }

  function moved() {
    if (!LIVE) return;
    clearTimeout(pauseTimer);
    if (performance.now() - lastPartial >= EVERY_MS) sendPartial();
    else pauseTimer = setTimeout(sendPartial, PAUSE_MS);
  }

  function point(event) {
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * UNITS) / rect.width;
    const y = ((event.clientY - rect.top) * UNITS) / rect.height;
    const now = event.timeStamp;
    if (t0 === null) t0 = now;
    return [Math.round(x * 10) / 10, Math.round(y * 10) / 10, Math.round(now - t0)];
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (current || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    pointer = event.pointerId;
    const [x, y, t] = point(event);
    current = [[x], [y], [t]];
    frame.classList.remove("sketchlvm-empty"); // the hint goes as the first stroke starts, not at pen-up
    setup(lineWidth(current));
    drawStroke(current);
    pendown();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (!current || event.pointerId !== pointer) return;
    event.preventDefault();
    const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    const [xs, ys, ts] = current;
    ctx.beginPath();
    ctx.moveTo(xs[xs.length - 1], ys[ys.length - 1]);
    for (const move of moves.length ? moves : [event]) {
      const [x, y, t] = point(move);
      if (x === xs[xs.length - 1] && y === ys[ys.length - 1]) continue;
      currentInk += Math.hypot(x - xs[xs.length - 1], y - ys[ys.length - 1]);
      xs.push(x); ys.push(y); ts.push(t);
      ctx.lineTo(x, y);
    }
    ctx.stroke(); // one segment per move: the cost does not grow with the drawing
    moved();
  });

  function penUp(event) {
    if (!current || event.pointerId !== pointer) return;
    clearTimeout(pauseTimer);
    pauseTimer = null;
    waiting = false;
    strokes.push(current);
    done.push({ add: current });
    undone = [];
    current = null;
    pointer = null;
    redraw(); // at the width the renderer will use for the whole drawing
    send();
  }
  canvas.addEventListener("pointerup", penUp);
  canvas.addEventListener("pointercancel", penUp);

  function undo() {
    const action = done.pop();
    if (!action) return;
    if (action.add) strokes.pop();
    else strokes = action.clear;
    undone.push(action);
    redraw();
    send();
  }

  function redo() {
    const action = undone.pop();
    if (!action) return;
    if (action.add) strokes.push(action.add);
    else strokes = [];
    done.push(action);
    redraw();
    send();
  }

  function clear() {
    if (!strokes.length) return;
    done.push({ clear: strokes }); // undo brings a cleared drawing back
    undone = [];
    strokes = [];
    t0 = null;
    redraw();
    send();
  }

  buttons.undo.addEventListener("click", undo);
  buttons.redo.addEventListener("click", redo);
  buttons.clear.addEventListener("click", clear);

  document.addEventListener("keydown", (event) => {
    if (!(event.ctrlKey || event.metaKey) || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key !== "z" && key !== "y") return;
    const target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    if (!element.isConnected) return;
    event.preventDefault();
    if (key === "y" || event.shiftKey) redo();
    else undo();
  });

  function load(value) {
    // A drawing set by the server (an example, or a clear): start a fresh history from it.
    let parsed = [];
    try {
      parsed = value ? JSON.parse(value) : [];
      if (!Array.isArray(parsed)) parsed = parsed.drawing || [];
    } catch (error) {
      parsed = [];
    }
    strokes = parsed;
    done = [];
    undone = [];
    current = null;
    t0 = null;
    sent = value || "";
    page.strokes = sent;
    recount();
    sentInk = strokesInk;
    redraw();
    refreshButtons();
  }

  watch("value", () => {
    if ((props.value || "") !== sent) load(props.value || "");
  });

  new ResizeObserver(resize).observe(canvas);
  resize();
  load(props.value || "");
})();
