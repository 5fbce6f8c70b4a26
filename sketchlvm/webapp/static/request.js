// SketchLVM: the `js` of the page's search event. Numbers each request as it leaves (the first input
// is the sequence number) so that answer.js can tell the answer to the latest request from older ones,
// and notes since when an answer has been awaited (answer.js says so when it takes over a second).
(seq, ...inputs) => {
  const page = (window.SketchLVMPage = window.SketchLVMPage || { seq: 0, floor: 0 });
  page.seq += 1;
  if (page.waitingSince == null) page.waitingSince = performance.now();
  if (page.check) page.check();
  return [String(page.seq), ...inputs];
}
