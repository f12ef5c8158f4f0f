// The draw-a-digit page. One source for both ways it runs:
//  - served by `mnistkit serve`: the page sends its 28x28 input to /api/predict (explanations by Captum);
//  - exported by `mnistkit export RUN --format web`: no server, the model runs here with onnxruntime-web,
//    and the explanation is an occlusion map computed here too.
// Either way the drawing is turned into the model's 28x28 input by `mnistify` below, the JavaScript twin
// of mnistkit.data.preprocess.mnistify (a browser test checks that both give the same numbers).
"use strict";

const SIZE = 28;
// How the model's training images frame their subject (mnistkit.data.preprocess.Framing), from the model's info:
// MNIST's digits fill a 20-pixel box centred by mass; Fashion-MNIST's clothes fill all 28 pixels, the box centred.
const DIGIT_FRAMING = { box: 20, centre: "mass" };
const MIN_CONTRAST = 0.05;
// Up to this many classes every one has its bar, in class order; with more (QuickDraw has 345), the most
// probable ones, best first, so the list stays beside the pad.
const MAX_BARS = 12;

// ---------------------------------------------------------------------------------------------------
// Preprocessing: any drawing -> white ink on black, framed in 28x28 as the model's training images were.

function grayFromRGBA(rgba, count) {
  // PIL's "L" conversion (ITU-R 601-2 luma, fixed point), then [0, 1].
  const gray = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    gray[i] = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) / 255;
  }
  return gray;
}

function median(values) {
  const sorted = Float64Array.from(values).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function toWhiteOnBlack(gray, width, height) {
  const border = [];
  for (let x = 0; x < width; x++) border.push(gray[x]);
  for (let x = 0; x < width; x++) border.push(gray[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) border.push(gray[y * width]);
  for (let y = 0; y < height; y++) border.push(gray[y * width + width - 1]);
  const background = median(border);
  const shift = Math.min(background, 1 - background);
  return gray.map((v) => Math.max((background < 0.5 ? v : 1 - v) - shift, 0));
}

function resamplingWeights(sizeIn, sizeOut) {
  // A triangle filter widened when shrinking (antialiased); each row sums to 1.
  const scale = sizeIn / sizeOut;
  const support = Math.max(scale, 1);
  const rows = [];
  for (let i = 0; i < sizeOut; i++) {
    const centre = (i + 0.5) * scale;
    const row = new Float64Array(sizeIn);
    let sum = 0;
    for (let j = 0; j < sizeIn; j++) {
      row[j] = Math.max(1 - Math.abs(j + 0.5 - centre) / support, 0);
      sum += row[j];
    }
    for (let j = 0; j < sizeIn; j++) row[j] /= sum;
    rows.push(row);
  }
  return rows;
}

function mnistify(gray, width, height, framing = DIGIT_FRAMING) {
  // Returns the 28x28 input (Float32Array, row-major) or null when there is no ink.
  const box = framing.box;
  const ink = toWhiteOnBlack(gray, width, height);
  let peak = 0;
  for (const v of ink) peak = Math.max(peak, v);
  if (peak < MIN_CONTRAST) return null;
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = (ink[y * width + x] /= peak);
      if (v > 0.1) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  const h = bottom - top + 1, w = right - left + 1;
  const newH = Math.max(1, Math.floor(h * box / Math.max(h, w) + 0.5));
  const newW = Math.max(1, Math.floor(w * box / Math.max(h, w) + 0.5));
  const wy = resamplingWeights(h, newH), wx = resamplingWeights(w, newW);
  const rowsDone = [];  // (newH x w): the rows resampled first, then the columns, as (Wy @ crop) @ Wx^T
  for (let i = 0; i < newH; i++) {
    const row = new Float64Array(w);
    for (let k = 0; k < h; k++) {
      const weight = wy[i][k];
      if (weight === 0) continue;
      for (let x = 0; x < w; x++) row[x] += weight * ink[(top + k) * width + left + x];
    }
    rowsDone.push(row);
  }
  const digit = new Float64Array(newH * newW);
  let total = 0, rowMass = 0, colMass = 0;
  for (let i = 0; i < newH; i++) {
    for (let j = 0; j < newW; j++) {
      let v = 0;
      for (let x = 0; x < w; x++) v += rowsDone[i][x] * wx[j][x];
      digit[i * newW + j] = v;
      total += v; rowMass += i * v; colMass += j * v;
    }
  }
  const byMass = framing.centre === "mass";
  const offsetY = byMass ? Math.min(Math.max(Math.floor(SIZE / 2 - rowMass / total + 0.5), 0), SIZE - newH)
                         : Math.floor((SIZE - newH) / 2 + 0.5);
  const offsetX = byMass ? Math.min(Math.max(Math.floor(SIZE / 2 - colMass / total + 0.5), 0), SIZE - newW)
                         : Math.floor((SIZE - newW) / 2 + 0.5);
  const out = new Float32Array(SIZE * SIZE);
  for (let i = 0; i < newH; i++) {
    for (let j = 0; j < newW; j++) {
      out[(offsetY + i) * SIZE + offsetX + j] = Math.min(Math.max(digit[i * newW + j], 0), 1);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Scores shared by both backends.

function softmax(logits) {
  const top = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

function energyScore(logits) {
  // mnistkit.metrics.energy_score: -logsumexp(logits); high means unlike the training data.
  const top = Math.max(...logits);
  return -(top + Math.log(logits.reduce((a, v) => a + Math.exp(v - top), 0)));
}

function rejection(score, info) {
  // mnistkit.predict.rejection
  if (info.ood_threshold == null || score <= info.ood_threshold) return null;
  const what = info.item ? `a ${info.item}` : "one of the known classes";
  return `not ${what} (score ${score.toFixed(2)} above ${info.ood_threshold.toFixed(2)})`;
}

// ---------------------------------------------------------------------------------------------------
// Backends: each has info() and predict(input) -> {probabilities, oodScore, attribution, method}.

class ServerBackend {
  async info() {
    const info = await (await fetch("api/model")).json();
    this.classes = info.classes;  // the API names its probabilities; predict() orders them like this
    return { ...info, where: `served, ${info.backend}` };
  }

  async predict(input, explain) {
    const pixels = [];
    for (let r = 0; r < SIZE; r++) pixels.push(Array.from(input.subarray(r * SIZE, (r + 1) * SIZE)));
    const response = await fetch(`api/predict${explain ? "?explain=1" : ""}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pixels }),
    });
    const result = await response.json();
    if (!response.ok) throw new Error(result.error || `error ${response.status}`);
    return { probabilities: this.classes.map((c) => result.probabilities[c]), oodScore: result.ood_score,
             attribution: result.attribution ? result.attribution.flat() : null, method: result.attribution_method };
  }
}

class BrowserBackend {
  constructor(config) { this.config = config; }

  async info() {
    const info = await (await fetch(this.config.model_info)).json();
    ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which a static host rarely gives
    this.session = await ort.InferenceSession.create(this.config.model, { executionProviders: ["wasm"] });
    return { ...info, where: `in this browser, onnxruntime-web ${ort.env.versions?.web ?? ""}`.trim() };
  }

  async logits(images, count) {
    const feeds = { images: new ort.Tensor("float32", images, [count, 1, SIZE, SIZE]) };
    const output = (await this.session.run(feeds)).logits.data;
    return Array.from({ length: count }, (_, n) => Array.from(output.subarray(n * output.length / count,
                                                                              (n + 1) * output.length / count)));
  }

  async predict(input, explain) {
    const [logits] = await this.logits(input, 1);
    const probabilities = softmax(logits);
    const target = probabilities.indexOf(Math.max(...probabilities));
    const attribution = explain ? await this.occlusion(input, target, logits[target]) : null;
    return { probabilities, oodScore: energyScore(logits), attribution, method: "occlusion" };
  }

  async occlusion(input, target, reference) {
    // Captum's Occlusion with a 4x4 black window moved 2 pixels at a time: each pixel gets the mean drop
    // of the target logit over the windows that cover it.
    const window = 4, stride = 2, steps = (SIZE - window) / stride + 1;
    const batch = new Float32Array(steps * steps * SIZE * SIZE);
    for (let n = 0; n < steps * steps; n++) {
      const top = Math.floor(n / steps) * stride, left = (n % steps) * stride;
      const image = batch.subarray(n * SIZE * SIZE, (n + 1) * SIZE * SIZE);
      image.set(input);
      for (let y = top; y < top + window; y++) image.fill(0, y * SIZE + left, y * SIZE + left + window);
    }
    const logits = await this.logits(batch, steps * steps);
    const sum = new Float64Array(SIZE * SIZE), count = new Float64Array(SIZE * SIZE);
    logits.forEach((row, n) => {
      const top = Math.floor(n / steps) * stride, left = (n % steps) * stride;
      for (let y = top; y < top + window; y++) {
        for (let x = left; x < left + window; x++) { sum[y * SIZE + x] += reference - row[target]; count[y * SIZE + x] += 1; }
      }
    });
    return Array.from(sum, (v, i) => v / count[i]);
  }
}

// ---------------------------------------------------------------------------------------------------
// The page.

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const seen = document.getElementById("seen").getContext("2d");
const why = document.getElementById("why").getContext("2d");
const labelEl = document.getElementById("label");
const verdictEl = document.getElementById("verdict");
const confidenceEl = document.getElementById("confidence");
const barsEl = document.getElementById("bars");
const statusEl = document.getElementById("status");
const whyCaption = document.getElementById("why-caption");
const backend = window.mnistkitWeb ? new BrowserBackend(window.mnistkitWeb) : new ServerBackend();
let info = null;
let drawing = false;
let dirty = false;
let inFlight = false;
let last = null;
// For tests and the curious: the preprocessing, the last answer, and whether an answer is still coming.
window.mnistkit = { mnistify, grayFromRGBA, last: null, ready: false, pending: () => dirty || inFlight || drawing };

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  labelEl.textContent = "–";
  verdictEl.textContent = "";
  confidenceEl.textContent = "";
  statusEl.textContent = "";
  seen.clearRect(0, 0, SIZE, SIZE);
  why.clearRect(0, 0, SIZE, SIZE);
  renderBars(info.classes.map(() => 0));
  window.mnistkit.last = null;
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
    // dirty: the result on screen, or one computed live mid-stroke, has no explanation yet; if a live
    // prediction is still in flight, its finally re-runs predict() with the heat map.
    if (drawing) { drawing = false; dirty = true; predict(); }
  });
}
document.getElementById("clear").addEventListener("click", clearPad);

function renderBars(probabilities) {
  const best = probabilities.indexOf(Math.max(...probabilities));
  let shown = info.classes.map((_, i) => i);
  if (shown.length > MAX_BARS) shown = shown.sort((a, b) => probabilities[b] - probabilities[a]).slice(0, MAX_BARS);
  barsEl.innerHTML = "";
  shown.forEach((i) => {
    const name = info.classes[i], p = probabilities[i];
    const row = document.createElement("div");
    row.className = "bar-row" + (i === best && p > 0 ? " top" : "");
    row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span>` +
                    `<span class="value">${(100 * p).toFixed(1)}%</span>`;
    row.querySelector(".name").textContent = name;
    row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    barsEl.appendChild(row);
  });
}

function renderSeen(input) {
  const image = seen.createImageData(SIZE, SIZE);
  input.forEach((v, i) => {
    const g = Math.round(255 * v);
    image.data.set([g, g, g, 255], 4 * i);
  });
  seen.putImageData(image, 0, 0);
}

function renderWhy(input, attribution) {
  // Red: ink that raised the predicted class's score; blue: ink that lowered it; over the faint input.
  const image = why.createImageData(SIZE, SIZE);
  const scale = Math.max(...attribution.map(Math.abs)) || 1;
  attribution.forEach((a, i) => {
    const t = Math.min(Math.abs(a) / scale, 1), base = 255 - Math.round(60 * input[i]);
    const strong = Math.round(base * (1 - t));
    image.data.set(a >= 0 ? [base, strong, strong, 255] : [strong, strong, base, 255], 4 * i);
  });
  why.putImageData(image, 0, 0);
}

function currentInput() {
  const { data } = ctx.getImageData(0, 0, pad.width, pad.height);
  return mnistify(grayFromRGBA(data, pad.width * pad.height), pad.width, pad.height, info?.framing ?? DIGIT_FRAMING);
}

async function predict() {
  if (!dirty || inFlight) return;
  inFlight = true;
  dirty = false;
  try {
    const input = currentInput();
    if (input === null) { statusEl.textContent = "the drawing is empty"; return; }
    const start = performance.now();
    const explain = !drawing;  // the explanation when a stroke ends, not at every live update
    const result = await backend.predict(input, explain);
    const best = result.probabilities.indexOf(Math.max(...result.probabilities));
    const rejected = rejection(result.oodScore, info);
    statusEl.textContent = "";
    labelEl.textContent = info.classes[best];
    labelEl.classList.toggle("rejected", rejected !== null);
    verdictEl.textContent = rejected ?? "";
    confidenceEl.textContent = `${(100 * result.probabilities[best]).toFixed(1)}%  ` +
                               `(${(performance.now() - start).toFixed(0)} ms)`;
    renderBars(result.probabilities);
    renderSeen(input);
    if (result.attribution) {
      renderWhy(input, result.attribution);
      whyCaption.textContent = `why: ${result.method} for “${info.classes[best]}”`;
    }
    window.mnistkit.last = { input: Array.from(input), label: info.classes[best], ...result, rejected };
  } catch (error) {
    statusEl.textContent = backend instanceof ServerBackend ? `cannot reach the server: ${error}` : `${error}`;
  } finally {
    inFlight = false;
    if (dirty && !drawing) predict();
  }
}

// Live prediction while drawing, at most every 150 ms.
setInterval(() => { if (drawing) predict(); }, 150);

backend.info().then((loaded) => {
  info = loaded;
  const accuracy = info.test_accuracy == null ? "" : `, test accuracy ${(100 * info.test_accuracy).toFixed(2)}%`;
  document.getElementById("model-info").textContent = `${info.model} trained on ${info.dataset}${accuracy} ` +
                                                      `(${info.where})`;
  document.querySelector("h1").textContent = `Draw a ${info.item || "picture"}`;
  clearPad();
  window.mnistkit.ready = true;
}).catch((error) => {
  document.getElementById("model-info").textContent = `cannot load the model: ${error}`;
});
