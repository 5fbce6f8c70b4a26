// SketchLVM answer guard: the body of gr.HTML's js_on_load for #sketchlvm-answer (gets element, props,
// trigger, watch).
//
// Every search answer carries a tag: the request's sequence number (request.js numbers requests as
// they leave), the query and the settings it was ranked with. The results and the message count as
// current only when the request was sent after the query last changed (a stroke, an upload, an
// example, "Search with this photo": `floor`) and its settings are the ones on screen now. Otherwise
// the page is marked out of date (body.sketchlvm-stale: dimmed, not clickable) until the answer that
// matches arrives. A request in flight with the same query and settings (leaving the words box) does
// not make the answer on screen out of date. Gradio already runs a page's searches one at a time (one
// event, always_last), so this is the check that what is on screen is what was asked, not the
// ordering itself.
//
// It also writes the results' caption (#sketchlvm-caption, under the message): "for the drawing so far"
// while the answer on screen is to a drawing sent mid-stroke, and "catching up" while an answer has been
// awaited for over LAG_MS (or, when the latest request was a mid-stroke search that a busy server let
// go, that results come at pen-up). And it searches the words as they are typed: WORDS_PAUSE_MS after
// the last keystroke it fires this element's `submit`, one of the page's search triggers.
(() => {
  const page = (window.SketchLVMPage = window.SketchLVMPage || { seq: 0, floor: 0 });
  page.answer = null;
  const LAG_MS = 1000;
  const WORDS_PAUSE_MS = 450;

  // A slider's range and its number box each follow the other a moment late, and not always with an
  // event: a setting counts only when both show it.
  function sliderValues(id) {
    return [...document.querySelectorAll(`${id} input[type=number], ${id} input[type=range]`)].map((i) => Number(i.value));
  }

  function controls() {
    const mode = document.querySelector("#sketchlvm-mode input:checked");
    const words = document.querySelector("#sketchlvm-words textarea, #sketchlvm-words input");
    return {
      mode: mode ? mode.value : null,
      k: sliderValues("#sketchlvm-top-k"),
      words: words ? words.value : "",
      weight: sliderValues("#sketchlvm-text-weight"),
    };
  }

  page.isCurrent = (tag) => {
    if (!tag || tag.seq <= page.floor) return false; // asked before the query last changed
    const now = controls();
    return tag.mode === now.mode && tag.words === now.words && now.k.length > 0 && now.weight.length > 0
      && now.k.every((k) => k === tag.k) && now.weight.every((w) => Math.abs(w - tag.weight) < 1e-6);
  };

  function caption() {
    // A line of our own under the message (the message is Gradio's, re-rendered with every answer).
    let line = document.getElementById("sketchlvm-caption");
    const message = document.getElementById("sketchlvm-message");
    if (!line && message && message.parentElement) {
      line = document.createElement("p");
      line.id = "sketchlvm-caption";
      line.setAttribute("role", "status");
      line.setAttribute("aria-live", "polite");
      message.insertAdjacentElement("afterend", line);
    }
    return line;
  }

  page.check = () => {
    const fresh = page.answer === null || page.isCurrent(page.answer);
    document.body.classList.toggle("sketchlvm-stale", !fresh);
    element.dataset.fresh = fresh ? "1" : "0";
    element.dataset.tag = page.answer ? JSON.stringify(page.answer) : "";
    const behind = page.waitingSince != null && performance.now() - page.waitingSince > LAG_MS;
    const partial = fresh && page.answer !== null && page.answer.partial === true;
    const shed = page.shed != null && page.shed === page.seq; // the latest request, mid-stroke, gave way
    const text = behind && shed ? "The server is busy: results for your drawing come when you lift the pen."
      : behind ? "Catching up: these results are for an earlier drawing or words; newer ones are on the way."
      : partial ? "Results for the drawing so far." : "";
    document.body.classList.toggle("sketchlvm-behind", behind);
    const line = caption();
    if (line && line.textContent !== text) line.textContent = text;
    element.dataset.behind = behind ? "1" : "0";
  };

  page.queryChanged = () => {
    page.floor = page.seq; // every answer to a request sent before now answers an older query
    page.check();
  };

  // Settings changed on screen (mode, number of results, words, weight): re-check at once, before the
  // search they start has even left, and again before the next paint: a slider's number box follows
  // its range a moment after the range's own input event.
  const recheck = () => {
    page.check();
    requestAnimationFrame(page.check);
  };
  document.addEventListener("input", recheck, true);
  document.addEventListener("change", recheck, true);
  // Gradio re-renders a control after its own event (the mode's radio buttons, a slider's number box):
  // check again whenever their markup changes, so a value that settles late is seen before the paint.
  const controlsChanged = new MutationObserver(recheck);
  for (const id of ["#sketchlvm-mode", "#sketchlvm-top-k", "#sketchlvm-text-weight"]) {
    const control = document.querySelector(id);
    if (control) controlsChanged.observe(control, { subtree: true, attributes: true, childList: true });
  }

  // And every 100 ms: a control can settle with no event or markup change to say so (seen in the race
  // test with Gradio's radio buttons), so a mismatch is dimmed within 100 ms whatever the cause.
  setInterval(() => {
    if (element.isConnected && !document.hidden) page.check();
  }, 100);

  watch("value", () => {
    let value = null;
    try {
      value = JSON.parse(props.value || "null");
    } catch (error) {
      value = null;
    }
    if (value && value.pending !== undefined) {
      page.queriesSet = (page.queriesSet || 0) + 1; // a new query, set on the server (tests wait for it)
      page.queryChanged();
    }
    else if (value && value.shed !== undefined) {
      // A mid-stroke search the busy server let go (webapp/busy.py): the results stay; the wait goes on
      // (no more mid-stroke searches this stroke, canvas.js) until the pen-up's answer.
      page.shed = value.shed;
      page.shedCount = (page.shedCount || 0) + 1; // benchmarks count these
    }
    else if (value && value.seq !== undefined) {
      page.answer = value;
      if (value.seq >= page.seq) {
        page.waitingSince = null; // the latest request is answered
        if (page.answered) page.answered(); // the canvas sends a rest that came meanwhile
      }
    }
    recheck();
  });

  // Words as they are typed: searched after a pause in typing (Enter still searches at once). The same
  // event as every other search, so the newest request wins there too.
  let typing = null;
  document.addEventListener("input", (event) => {
    const box = event.target;
    if (!box || !box.closest || !box.closest("#sketchlvm-words")) return;
    clearTimeout(typing);
    typing = setTimeout(() => {
      if (element.isConnected) trigger("submit");
    }, WORDS_PAUSE_MS);
  }, true);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target && event.target.closest && event.target.closest("#sketchlvm-words")) {
      clearTimeout(typing); // Enter searches now: no second search after the pause
    }
  }, true);

  page.check();
})();
