// The page of `tripletlab serve`: plain JavaScript, nothing loaded from elsewhere.
"use strict";
const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = {};
  try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
  if (!response.ok) {
    const error = new Error(body.error || `the service answered ${response.status}`);
    error.retry = response.headers.has("Retry-After");  // still loading, or busy
    throw error;
  }
  return body;
}

let maxK = 100;  // the service's --max-k, from /v1/info

function tile(src, caption, kind) {
  const figure = document.createElement("figure");
  figure.className = `tile ${kind}`;
  const image = document.createElement("img");
  image.src = src;
  image.alt = caption;
  const text = document.createElement("figcaption");
  text.textContent = caption;
  figure.append(image, text);
  return figure;
}

async function search(file) {
  showError("");
  $("verdict").hidden = true;
  const form = new FormData();
  form.append("images", file, file.name || "query.png");
  const k = Math.max(1, Math.min(maxK, parseInt($("k").value, 10) || 8));
  $("k").value = String(k);  // what is asked for
  try {
    const body = await api(`/v1/search?k=${k}`, { method: "POST", body: form });
    const result = body.results[0];
    const grid = $("results");
    grid.replaceChildren(tile(URL.createObjectURL(file), "query", "query"));
    const label = result.match ? result.match.label : null;
    for (const n of result.neighbours) {
      const figure = tile(`/v1/items/${n.id}/image`, `${n.label} · ${n.distance.toFixed(3)}`,
                          label && label !== "unknown" && n.label !== label ? "other" : "");
      figure.dataset.testid = "neighbour";
      figure.dataset.label = n.label;
      grid.append(figure);
    }
    if (result.match) {
      const m = result.match;
      $("verdict").textContent = m.label === "unknown"
        ? `No match: the nearest image is farther than ${m.threshold.toFixed(3)} (unknown)`
        : `Match: ${m.label} (distance within ${m.threshold.toFixed(3)}, precision ${m.precision})`;
    } else {
      $("verdict").textContent = "The index is not calibrated: no match verdict";
    }
    $("verdict").hidden = false;
  } catch (error) {
    $("results").replaceChildren();
    showError(`The service refused this image: ${error.message}`);
  }
}

async function randomItem() {
  try {
    const item = await api("/v1/items/random");
    const image = await fetch(`/v1/items/${item.id}/image`);
    if (!image.ok) throw new Error(`its image cannot be read (${image.status})`);
    const blob = await image.blob();
    await search(new File([blob], `item-${item.id}.png`, { type: "image/png" }));
  } catch (error) {
    showError(`No gallery image: ${error.message}`);
  }
}

async function compare() {
  const files = [$("first").files[0], $("second").files[0]];
  $("comparison").hidden = true;
  $("pair").replaceChildren();  // no earlier pair beside a refusal
  if (!files[0] || !files[1]) { showError("Choose two images to compare"); return; }
  showError("");
  const form = new FormData();
  files.forEach((f) => form.append("images", f, f.name));
  try {
    const body = await api("/v1/compare", { method: "POST", body: form });
    $("pair").replaceChildren(...files.map((f, i) => tile(URL.createObjectURL(f), `image ${i + 1}`, "")));
    const verdict = body.same === null ? "no threshold to decide"
      : body.same ? "the same kind" : "different kinds";
    const at = body.threshold === null ? "" : ` at threshold ${body.threshold.toFixed(3)}`;
    $("comparison").textContent = `Distance ${body.distance.toFixed(4)} (${body.metric}): ${verdict}${at}`;
    $("comparison").hidden = false;
  } catch (error) {
    showError(`The service refused these images: ${error.message}`);
  }
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", () => { if ($("file").files[0]) search($("file").files[0]); });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) search(e.dataTransfer.files[0]);
  });
  $("random").addEventListener("click", randomItem);
  $("compare").addEventListener("click", compare);
  showInfo();
}

function showInfo() {
  api("/v1/info").then((info) => {
    const index = info.index ? `${info.index.count.toLocaleString()} gallery images (${info.index.kind})` : "no index";
    $("info").textContent = `${info.run}: ${info.backbone}, ${info.embedding_dim}-d, ${info.distance}, ${index}, ${info.engine}`;
    maxK = info.max_k;
    $("k").max = String(maxK);
    if (parseInt($("k").value, 10) > maxK) $("k").value = String(maxK);
  }).catch((error) => {
    $("info").textContent = `Not ready: ${error.message}`;
    if (error.retry) setTimeout(showInfo, 1000);  // the model is loading: ask again
  });
}

setUp();
