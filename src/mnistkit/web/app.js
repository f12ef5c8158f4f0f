// Draw-a-digit page: pointer events for mouse and touch, throttled live predictions.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const labelEl = document.getElementById("label");
const confidenceEl = document.getElementById("confidence");
const barsEl = document.getElementById("bars");
const statusEl = document.getElementById("status");
let classes = [];
let drawing = false;
let dirty = false;
let inFlight = false;
let last = null;

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  labelEl.textContent = "–";
  confidenceEl.textContent = "";
  statusEl.textContent = "";
  seen.clearRect(0, 0, 28, 28);
  renderBars(Object.fromEntries(classes.map((c) => [c, 0])));
  dirty = false;
}

function position(event) {
  const rect = pad.getBoundingClientRect();
  return { x: (event.clientX - rect.left) * (pad.width / rect.width),
           y: (event.clientY - rect.top) * (pad.height / rect.height) };
}

function stroke(from, to) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  dirty = true;
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  last = position(event);
  stroke(last, last);
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const point = position(event);
  stroke(last, point);
  last = point;
});
for (const type of ["pointerup", "pointercancel", "pointerleave"]) {
  pad.addEventListener(type, () => {
    if (drawing) { drawing = false; predict(); }
  });
}
document.getElementById("clear").addEventListener("click", clearPad);

function renderBars(probabilities) {
  const entries = Object.entries(probabilities);
  const top = entries.reduce((a, b) => (b[1] > a[1] ? b : a), ["", -1])[0];
  barsEl.innerHTML = "";
  for (const [name, p] of entries) {
    const row = document.createElement("div");
    row.className = "bar-row" + (name === top && p > 0 ? " top" : "");
    row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span>` +
                    `<span class="value">${(100 * p).toFixed(1)}%</span>`;
    row.querySelector(".name").textContent = name;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    barsEl.appendChild(row);
  }
}

function renderSeen(pixels) {
  const image = seen.createImageData(28, 28);
  pixels.flat().forEach((v, i) => {
    const g = Math.round(255 * v);
    image.data.set([g, g, g, 255], 4 * i);
  });
  seen.putImageData(image, 0, 0);
}

async function predict() {
  if (!dirty || inFlight) return;
  inFlight = true;
  dirty = false;
  try {
    const response = await fetch("/api/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image: pad.toDataURL("image/png") }),
    });
    const result = await response.json();
    if (!response.ok) {
      statusEl.textContent = result.error || `error ${response.status}`;
      return;
    }
    statusEl.textContent = "";
    labelEl.textContent = result.label;
    confidenceEl.textContent = `${(100 * result.probabilities[result.label]).toFixed(1)}%  (${result.latency_ms} ms)`;
    renderBars(result.probabilities);
    renderSeen(result.input);
  } catch (error) {
    statusEl.textContent = `cannot reach the server: ${error}`;
  } finally {
    inFlight = false;
    if (dirty && !drawing) predict();
  }
}

// Live prediction while drawing, at most every 150 ms.
setInterval(() => { if (drawing) predict(); }, 150);

fetch("/api/model").then((r) => r.json()).then((info) => {
  classes = info.classes;
  const accuracy = info.test_accuracy == null ? "" : `, test accuracy ${(100 * info.test_accuracy).toFixed(2)}%`;
  document.getElementById("model-info").textContent = `${info.model} trained on ${info.dataset}${accuracy} (${info.backend})`;
  clearPad();
});
