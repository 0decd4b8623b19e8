// litemedsam serve: the page. Plain JavaScript, no libraries, nothing fetched from the network.
"use strict";

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d");
const state = { doc: null, z: 0, image: null, overlay: null, selected: null, drag: null, version: 0, busy: false };

function say(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (method !== "GET") {
    options.headers = { "Content-Type": "application/json", "X-Litemedsam": "1" };
    options.body = JSON.stringify(body || {});
  }
  const response = await fetch(url, options).catch(() => {
    throw new Error("the server does not answer: is litemedsam serve still running?");
  });
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  if (state.doc && url.startsWith(`/api/doc/${state.doc.id}/`) && typeof data.unsaved === "boolean") {
    markUnsaved(data);  // every edit's answer says whether the case has edits not saved yet
  }
  return data;
}

function markUnsaved(doc) {
  $("unsaved").hidden = !doc.unsaved;
  $("discard").disabled = !doc.unsaved;
  if (doc.problem) say(doc.problem, true);
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("cannot load " + url));
    img.src = url;
  });
}

async function listCases() {
  const data = await api("GET", "/api/cases");
  const list = $("cases");
  list.replaceChildren();
  for (const c of data.cases) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.className = "case" + (c.segmented ? " segmented" : "");
    button.dataset.name = c.name;
    button.textContent = c.name;
    button.title = c.segmented ? "has a segmentation in " + data.output : c.name;
    button.onclick = () => openCase(c.name);
    item.append(button);
    list.append(item);
  }
  if (!data.folder) say("No folder served: upload a case.");
}

async function openCase(name) {
  say("opening " + name + " …");
  try {
    show(await api("POST", "/api/open", { name }));
  } catch (e) { say(e.message, true); }
}

async function upload(file) {
  say("uploading " + file.name + " …");
  const response = await fetch("/api/upload?name=" + encodeURIComponent(file.name),
    { method: "POST", headers: { "X-Litemedsam": "1" }, body: file });
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) { say(data.error, true); return; }
  show(data);
}

async function show(doc) {
  state.doc = doc;
  state.selected = null;
  state.busy = false;  // a job of the case before belongs to it
  state.z = Math.floor(doc.depth / 2);
  $("case-panel").hidden = false;
  $("case-name").textContent = doc.name;
  $("case-info").textContent = `${doc.dim}, ${doc.width} × ${doc.height}` + (doc.dim === "3D" ? ` × ${doc.depth} slices` : "")
    + `; model ${doc.model}; saves as ${doc.output}`;
  const is3d = doc.dim === "3D";
  $("slice-row").hidden = !is3d;
  $("range-row").hidden = !is3d;
  $("model-window-row").hidden = !doc.raw;
  $("mw-level").value = doc.window ? doc.window[0] : "";  // none: percentile clipping (not CT)
  $("mw-width").value = doc.window ? doc.window[1] : "";
  $("slice").max = doc.depth - 1;
  $("z0").max = $("z1").max = doc.depth - 1;
  $("z0").value = Math.max(0, state.z - 5);
  $("z1").value = Math.min(doc.depth - 1, state.z + 5);
  view.width = doc.width;
  view.height = doc.height;
  // radiological display (the file's orientation): the patient's right on the left, the front at the top;
  // only what is shown is flipped, the image and its labels keep their voxel order
  const d = doc.display || { flip_x: false, flip_y: false, sides: {} };
  view.style.transform = `scale(${d.flip_x ? -1 : 1}, ${d.flip_y ? -1 : 1})`;
  for (const side of ["top", "bottom", "left", "right"]) $(`side-${side}`).textContent = d.sides[side] || "";
  fit();
  listObjects(doc.objects);
  markUnsaved(doc);
  await showSlice(state.z);
  say(doc.unsaved ? `${doc.name} open with its unsaved edits (kept since the last save): Save writes them, `
    + "Discard drops them"
    : `${doc.name} open` + (doc.objects.length ? `, with ${doc.objects.length} object(s) from its segmentation` : ""));
}

async function showSlice(z) {
  const doc = state.doc;
  state.z = Math.max(0, Math.min(doc.depth - 1, z));
  $("slice").value = state.z;
  $("slice-text").textContent = `${state.z} (0–${doc.depth - 1})`;
  const wanted = state.z;
  let image, overlay;
  try {
    [image, overlay] = await Promise.all([
      loadImage(`/api/doc/${doc.id}/image/${wanted}`),
      loadImage(`/api/doc/${doc.id}/labels/${wanted}?v=${state.version}`),
    ]);
  } catch (e) {
    if (doc === state.doc && wanted === state.z) say(`slice ${wanted} cannot be shown: is litemedsam serve still running?`, true);
    return;
  }
  if (doc !== state.doc || wanted !== state.z) return;  // a newer slice (or case) was asked for meanwhile
  state.image = windowed(image);
  state.overlay = overlay;
  draw();
}

async function refreshOverlay() {
  state.version += 1;
  const doc = state.doc, z = state.z;
  const overlay = await loadImage(`/api/doc/${doc.id}/labels/${z}?v=${state.version}`);
  if (doc !== state.doc || z !== state.z) return;  // the page moved on: showSlice loads the one wanted
  state.overlay = overlay;
  draw();
}

function fit() {
  // the image as large as the stage allows, its aspect kept (small images enlarged, pixels square)
  const stage = $("stage");
  const scale = Math.min((stage.clientWidth - 16) / view.width, (stage.clientHeight - 16) / view.height);
  view.style.width = Math.max(1, Math.floor(view.width * scale)) + "px";
  view.style.height = Math.max(1, Math.floor(view.height * scale)) + "px";
}
window.addEventListener("resize", () => { if (state.doc) fit(); });

function windowed(img) {
  // the slice with the level/width window applied to its 0-255 values
  const canvas = document.createElement("canvas");
  canvas.width = img.width;
  canvas.height = img.height;
  const c = canvas.getContext("2d");
  c.drawImage(img, 0, 0);
  state.pixels = c.getImageData(0, 0, img.width, img.height);
  return applyWindow(canvas);
}

function applyWindow(canvas) {
  const level = +$("level").value, width = +$("width").value;
  const lut = new Uint8ClampedArray(256);
  for (let v = 0; v < 256; v++) lut[v] = ((v - (level - width / 2)) / width) * 255;
  const src = state.pixels.data, out = new ImageData(state.pixels.width, state.pixels.height);
  for (let i = 0; i < src.length; i += 4) {
    out.data[i] = lut[src[i]]; out.data[i + 1] = lut[src[i + 1]]; out.data[i + 2] = lut[src[i + 2]]; out.data[i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(out, 0, 0);
  return canvas;
}

function draw() {
  if (!state.image) return;
  ctx.globalAlpha = 1;
  ctx.drawImage(state.image, 0, 0);
  if (state.overlay) {
    ctx.globalAlpha = +$("opacity").value / 100;
    ctx.drawImage(state.overlay, 0, 0);
    ctx.globalAlpha = 1;
  }
  if (state.stroke) {  // the brush stroke being drawn, sent when the mouse is released
    ctx.fillStyle = state.stroke.erase ? "rgba(0,0,0,0.6)" : "rgba(255,255,0,0.5)";
    for (const [x, y] of state.stroke.points) {
      ctx.beginPath(); ctx.arc(x, y, state.stroke.radius, 0, 2 * Math.PI); ctx.fill();
    }
  }
  if (state.drag) {
    const { x0, y0, x1, y1 } = state.drag;
    ctx.strokeStyle = "#0f0";
    ctx.lineWidth = Math.max(1, view.width / 400);
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  }
}

function listObjects(objects) {
  const list = $("objects");
  list.replaceChildren();
  for (const o of objects) {
    const row = document.createElement("li");
    row.className = "object" + (o.label === state.selected ? " selected" : "");
    row.dataset.label = o.label;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${o.color.join(",")})`;
    const text = document.createElement("span");
    text.className = "grow";
    text.textContent = `label ${o.label} · ${o.voxels} ${state.doc.dim === "3D" ? "voxels" : "pixels"}`
      + (o.ml !== null && o.ml !== undefined ? ` · ${o.ml} mL` : "")
      + (typeof o.confidence === "number" ? ` · IoU ${o.confidence.toFixed(2)}` : "");
    if (typeof o.confidence === "number") text.title = "the model's own estimate of this mask's IoU (its confidence)";
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.onclick = (e) => { e.stopPropagation(); erase(o.label); };
    row.append(swatch, text, remove);
    row.onclick = () => { state.selected = state.selected === o.label ? null : o.label; listObjects(objects); };
    list.append(row);
  }
  state.objects = objects;
}

function imagePoint(event) {
  // the image pixel under the mouse, through the display's flips
  const rect = view.getBoundingClientRect(), d = (state.doc && state.doc.display) || {};
  const x = Math.max(0, Math.min(view.width - 1, Math.floor((event.clientX - rect.left) * view.width / rect.width)));
  const y = Math.max(0, Math.min(view.height - 1, Math.floor((event.clientY - rect.top) * view.height / rect.height)));
  return { x: d.flip_x ? view.width - 1 - x : x, y: d.flip_y ? view.height - 1 - y : y };
}

function tool() { return document.querySelector('input[name="tool"]:checked').value; }

view.addEventListener("mousedown", (e) => {
  if (!state.doc || state.busy) return;
  const p = imagePoint(e);
  if (tool() === "box") state.drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
  else state.stroke = { points: [[p.x, p.y]], erase: tool() === "eraser",
                        radius: Math.max(1, Math.min(200, parseInt($("brush-size").value, 10) || 4)) };
});
window.addEventListener("mousemove", (e) => {
  if (state.stroke) {
    const p = imagePoint(e), last = state.stroke.points[state.stroke.points.length - 1];
    if ((p.x !== last[0] || p.y !== last[1]) && state.stroke.points.length < 10000) state.stroke.points.push([p.x, p.y]);
    draw();
    return;
  }
  if (!state.drag) return;
  const p = imagePoint(e);
  state.drag.x1 = p.x;
  state.drag.y1 = p.y;
  draw();
});
function typedLabel() {
  // the label typed for the next object, when it is one (1-65535), else null (the next free one)
  const wanted = parseInt($("next-label").value, 10);
  return wanted >= 1 && wanted <= 65535 ? wanted : null;
}

async function sendStroke(stroke) {
  const doc = state.doc, typed = typedLabel();
  if (!stroke.erase && state.selected === null && (state.objects || []).some((o) => o.label === typed)) {
    say(`label ${typed} is already an object: select it to paint it, or type a free label`, true);  // never silently
    draw();
    return;
  }
  const label = stroke.erase ? 0 : state.selected ?? typed;
  try {
    const result = await api("POST", `/api/doc/${doc.id}/brush`,
      { z: state.z, points: stroke.points, radius: stroke.radius, label });
    if (doc !== state.doc) return;
    if (!stroke.erase && state.selected === null) state.selected = result.label;  // keep painting the same object
    listObjects(result.objects);
    await refreshOverlay();
    say(stroke.erase ? "erased" : `label ${result.label} painted`);
  } catch (e) { say(e.message, true); draw(); }
}
window.addEventListener("mouseup", async () => {
  if (state.stroke) {
    const stroke = state.stroke;
    state.stroke = null;
    await sendStroke(stroke);
    return;
  }
  const d = state.drag;
  if (!d) return;
  state.drag = null;
  draw();
  if (Math.abs(d.x1 - d.x0) < 2 || Math.abs(d.y1 - d.y0) < 2) return;
  await segmentBox([Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)]);
});

async function segmentBox(box) {
  const doc = state.doc;
  const body = { box, z: state.z, label: state.selected ?? typedLabel(),
    mode: state.selected !== null ? "replace" : "new" };  // a typed label that is taken is refused, never replaced
  if (doc.dim === "3D" && $("propagate").checked) {
    const z0 = Math.min(+$("z0").value, +$("z1").value), z1 = Math.max(+$("z0").value, +$("z1").value);
    if (state.z < z0 || state.z > z1) {  // never stretch the range the user set without saying so
      say(`slice ${state.z} is outside the range ${z0}–${z1}: set "from" and "to" to include it, or untick propagate`, true);
      return;
    }
    body.z_range = [z0, z1];
  }
  state.busy = true;
  const start = performance.now();
  try {
    const result = await api("POST", `/api/doc/${doc.id}/box`, body);
    if (result.job) {
      await follow(doc, body.z_range);
    } else if (doc === state.doc) {
      listObjects(result.objects);
      await refreshOverlay();
      say(`label ${result.label}: ${Math.round(performance.now() - start)} ms`);
    }
    if (doc === state.doc) {
      state.selected = null;
      $("next-label").value = "";
      listObjects(state.objects);
    }
  } catch (e) { if (doc === state.doc) say(e.message, true); }
  if (doc === state.doc) state.busy = false;  // another case opened meanwhile is not waiting for this one
}

async function follow(doc, range) {
  const start = performance.now();
  $("job").hidden = false;
  try {
    for (;;) {
      const job = await api("GET", `/api/doc/${doc.id}/job`);
      if (doc !== state.doc) return;  // another case is open: its page is not this job's (the job goes on)
      $("job-bar").max = Math.max(1, job.total);
      $("job-bar").value = job.done;
      say(`propagating: ${job.done} / ${job.total || "?"} slices`);
      if (job.state === "done") {
        listObjects(job.objects);
        await refreshOverlay();
        say(`label ${job.label}: propagated over slices ${range[0]}–${range[1]} in ${Math.round(performance.now() - start)} ms`);
        return;
      }
      if (job.state !== "running") { say(job.message, job.state === "failed"); return; }
      await new Promise((r) => setTimeout(r, 150));
    }
  } finally { $("job").hidden = true; }
}

async function erase(label) {
  try {
    const result = await api("DELETE", `/api/doc/${state.doc.id}/objects/${label}`);
    if (state.selected === label) state.selected = null;
    listObjects(result.objects);
    await refreshOverlay();
    say(`label ${label} deleted`);
  } catch (e) { say(e.message, true); }
}

async function undo(again = false) {
  const step = again ? "redo" : "undo";
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/${step}`);
    listObjects(result.objects);
    await refreshOverlay();
    say(result[again ? "redone" : "undone"] ? `${step} done` : `nothing to ${step}`);
  } catch (e) { say(e.message, true); }
}

async function save() {
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/save`);
    say(`saved ${result.saved} in ${result.folder}`);
    listCases();
  } catch (e) { say(e.message, true); }
}

$("slice").addEventListener("input", () => showSlice(+$("slice").value));
view.addEventListener("wheel", (e) => {
  if (!state.doc || state.doc.depth < 2) return;
  e.preventDefault();
  showSlice(state.z + (e.deltaY > 0 ? 1 : -1));
}, { passive: false });
for (const id of ["level", "width"]) $(id).addEventListener("input", () => { if (state.image) { applyWindow(state.image); draw(); } });
$("opacity").addEventListener("input", draw);
$("set-z0").onclick = () => { $("z0").value = state.z; };
$("set-z1").onclick = () => { $("z1").value = state.z; };
$("new").onclick = () => { state.selected = null; listObjects(state.objects || []); };
$("undo").onclick = () => undo();
$("redo").onclick = () => undo(true);
$("mw-apply").onclick = async () => {
  try {
    const doc = await api("POST", `/api/doc/${state.doc.id}/window`, { window: [+$("mw-level").value, +$("mw-width").value] });
    state.doc = doc;
    await showSlice(state.z);
    say(`model window ${doc.window[0]}, ${doc.window[1]}: the next boxes see the image so`);
  } catch (e) { say(e.message, true); }
};
$("mw-preset").onchange = () => {  // a CT window preset: set as the model window, as typed
  const [level, width] = $("mw-preset").value.split(",");
  $("mw-preset").value = "";
  if (width === undefined) return;
  $("mw-level").value = level;
  $("mw-width").value = width;
  $("mw-apply").click();
};
$("save").onclick = save;
$("discard").onclick = async () => {
  if (!confirm("Drop the edits made since the last save?")) return;
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/discard`);
    listObjects(result.objects);
    await refreshOverlay();
    say("unsaved edits dropped");
  } catch (e) { say(e.message, true); }
};
$("cancel").onclick = () => api("POST", `/api/doc/${state.doc.id}/cancel`).catch((e) => say(e.message, true));
$("upload").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); });
window.addEventListener("keydown", (e) => {
  if (!state.doc || e.target.tagName === "INPUT") return;
  if ((e.ctrlKey || e.metaKey) && (e.key === "y" || (e.key.toLowerCase() === "z" && e.shiftKey))) {
    e.preventDefault(); undo(true);
  } else if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
  else if (!e.ctrlKey && !e.metaKey && ["b", "e", "x"].includes(e.key)) {
    document.querySelector(`input[name="tool"][value="${{ b: "brush", e: "eraser", x: "box" }[e.key]}"]`).checked = true;
  }
  else if (e.key === "Escape") { state.selected = null; listObjects(state.objects || []); }
  else if (e.key === "Delete" && state.selected) erase(state.selected);
  else if (e.key === "ArrowUp" || e.key === "PageUp") showSlice(state.z + 1);
  else if (e.key === "ArrowDown" || e.key === "PageDown") showSlice(state.z - 1);
});

listCases().catch((e) => say(e.message, true));
