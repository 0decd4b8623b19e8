// litemedsam serve: the page. Plain JavaScript, no libraries, nothing fetched from the network.
"use strict";

const $ = (id) => document.getElementById(id);
const view = $("view");
const ctx = view.getContext("2d");
const state = { doc: null, plane: "z", at: { z: 0, y: 0, x: 0 }, zoom: 1, image: null, overlay: null,
                selected: null, drag: null, lastBox: null, version: 0, windowVersion: 0, busy: false,
                hidden: new Set(), cases: [] };
// a volume's planes: "z" its slices, "y" and "x" cuts across them -> the axes of their rows and columns
const PLANES = { z: ["y", "x"], y: ["z", "x"], x: ["z", "y"] };
// the server's token: from the address serve printed (/#token=..., or ?token=), kept in this tab's sessionStorage
// (this origin's: another port never sees it) and sent as a header with every request; never a cookie
const TOKEN = (() => {
  const given = new URLSearchParams(location.hash.slice(1)).get("token") || new URLSearchParams(location.search).get("token");
  if (given) {
    sessionStorage.setItem("litemedsam-token", given);
    history.replaceState(null, "", "/");  // the token leaves the address bar
  }
  return sessionStorage.getItem("litemedsam-token") || "";
})();
const GONE = "the server does not answer: is litemedsam serve still running?";
// this tab's name, made once (kept across reloads of the tab): its edits are its own, and Undo takes back only them
const TAB = sessionStorage.getItem("litemedsam-tab") || (() => {
  const made = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
  sessionStorage.setItem("litemedsam-tab", made);
  return made;
})();

function sizeOf(axis) { const d = state.doc; return { z: d.depth, y: d.height, x: d.width }[axis]; }
function planeView(plane = state.plane) {
  // how a plane is shown (formats.display): flips, side letters, a pixel's height over its width, its name
  const d = state.doc.display && state.doc.display[plane];
  return d || { flip_x: false, flip_y: false, sides: {}, aspect: 1, name: "" };
}
function cutUrl(what, plane, index) {
  // the image or the labels of slice ``index`` of ``plane``: this version of them (the image: of its model window;
  // the labels: of the edits, without the hidden objects), never a cached one
  const hide = [...state.hidden].join(",");
  const query = [plane === "z" ? "" : `plane=${plane}`,
    what === "labels" ? `v=${state.version}` : `w=${state.windowVersion}`,
    what === "labels" && hide ? `hide=${hide}` : ""].filter(Boolean);
  return `/api/doc/${state.doc.id}/${what}/${index}?${query.join("&")}`;
}
function loadCut(plane, index) { return Promise.all([loadImage(cutUrl("image", plane, index)), loadImage(cutUrl("labels", plane, index))]); }

function say(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function api(method, url, body) {
  const options = { method, headers: { "X-Litemedsam-Token": TOKEN, "X-Litemedsam-Tab": TAB } };
  if (method !== "GET") {
    Object.assign(options.headers, { "Content-Type": "application/json", "X-Litemedsam": "1" });
    options.body = JSON.stringify(body || {});
  }
  const response = await fetch(url, options).catch(() => { throw new Error(GONE); });
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

async function loadImage(url) {
  // fetched with the token's header (an <img src> could only send a cookie), shown from the bytes received
  const response = await fetch(url, { headers: { "X-Litemedsam-Token": TOKEN } }).catch(() => { throw new Error(GONE); });
  if (!response.ok) {  // the server's reason (a new token after a restart, a case no longer open), not "is it running?"
    const data = await response.json().catch(() => ({}));
    throw new Error(data.error || `${response.status} ${response.statusText}`);
  }
  const local = URL.createObjectURL(await response.blob());
  try {
    return await new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("cannot load " + url));
      img.src = local;
    });
  } finally { URL.revokeObjectURL(local); }
}

async function listCases() {
  const data = await api("GET", "/api/cases");
  const list = $("cases");
  list.replaceChildren();
  state.cases = data.cases.map((c) => c.name);
  for (const c of data.cases) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.className = "case" + (c.segmented ? " segmented" : "");
    button.dataset.name = c.name;
    button.textContent = c.name;
    button.title = c.segmented ? "has a segmentation in " + data.output : c.name;
    button.onclick = () => openCase(c.name);
    button.classList.toggle("open", !!state.doc && state.doc.name === c.name);
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
  let response;
  try {
    response = await fetch("/api/upload?name=" + encodeURIComponent(file.name),
      { method: "POST", headers: { "X-Litemedsam": "1", "X-Litemedsam-Token": TOKEN }, body: file });
  } catch (e) {  // no answer at all: said as every other action says it
    response = null;
  }
  $("upload").value = "";  // the chooser forgets the file, whatever came of it (a failed one stayed named there)
  if (!response) { say(`${file.name}: ${GONE}`, true); return; }
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) { say(data.error, true); return; }
  show(data);
}

async function show(doc) {
  state.doc = doc;
  state.selected = null;
  state.hidden = new Set();
  state.busy = false;  // a job of the case before belongs to it
  $("hint").hidden = true;
  $("frame").hidden = false;
  $("cursor").textContent = "";  // the last case's voxel is not this one's
  $("propagate").checked = true;  // each case starts with the defaults
  $("redraw").checked = false;
  $("over").value = doc.guard ? doc.guard.over : "all";
  $("table").replaceChildren(...(doc.table || []).map((entry) => {  // the project's labels (serve --labels)
    const option = document.createElement("option");
    option.value = entry.label;
    option.label = `${entry.label} ${entry.name}`;
    return option;
  }));
  for (const button of document.querySelectorAll("#cases button")) button.classList.toggle("open", button.dataset.name === doc.name);
  state.at = { z: Math.floor(doc.depth / 2), y: Math.floor(doc.height / 2), x: Math.floor(doc.width / 2) };
  state.plane = "z";
  state.zoom = 1;
  state.lastBox = null;
  $("case-panel").hidden = false;
  $("case-name").textContent = doc.name;
  $("case-info").textContent = `${doc.dim}, ${doc.width} × ${doc.height}` + (doc.dim === "3D" ? ` × ${doc.depth} slices` : "")
    + `; model ${doc.model}; saves as ${doc.output}`;
  const is3d = doc.dim === "3D";
  $("slice-row").hidden = !is3d;
  $("plane-row").hidden = !is3d;
  $("others").hidden = !is3d;
  $("interpolate").hidden = $("sphere").parentElement.hidden = $("line-tool").hidden = !is3d;  // volume tools
  if (!is3d && tool() === "line") document.querySelector('input[name="tool"][value="box"]').checked = true;
  $("model-window-row").hidden = !doc.raw;
  $("mw-level").value = doc.window ? doc.window[0] : "";  // none: percentile clipping (not CT)
  $("mw-width").value = doc.window ? doc.window[1] : "";
  $("z0").max = $("z1").max = doc.depth - 1;
  $("z0").value = Math.max(0, state.at.z - 5);
  $("z1").value = Math.min(doc.depth - 1, state.at.z + 5);
  const planes = $("planes");
  planes.replaceChildren();
  if (is3d) {
    for (const plane of ["z", "y", "x"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.plane = plane;
      button.textContent = planeView(plane).name || `${plane} plane`;
      button.onclick = () => setPlane(plane);
      planes.append(button);
    }
  }
  listObjects(doc.objects);
  markUnsaved(doc);
  $("ready").textContent = "";
  if (is3d) watchEncoding(doc);
  await setPlane("z");
  if (doc.readonly || doc.notice) { say(`${doc.name}: ${doc.readonly || doc.notice}`, true); return; }
  say(doc.unsaved ? `${doc.name} open with its unsaved edits (kept since the last save): Save writes them, `
    + "Discard drops them"
    : `${doc.name} open` + (doc.objects.length ? `, with ${doc.objects.length} object(s) from its segmentation` : ""));
}

async function watchEncoding(doc) {
  // how many of a volume's slices the server has encoded in the background, until all are (or another case opens)
  while (doc === state.doc) {
    let info;
    try { info = await api("GET", `/api/doc/${doc.id}`); } catch (e) { return; }
    if (doc !== state.doc) return;
    $("ready").textContent = info.encoded >= doc.depth ? "· all slices ready" : `· ${info.encoded} / ${doc.depth} slices ready`;
    if (info.encoded >= doc.depth) return;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function setPlane(plane) {
  // show ``plane`` large: a volume's slices (z) or a cut across them (y, x); boxes and the brush work in any
  const doc = state.doc;
  state.plane = plane;
  const [rows, cols] = doc.dim === "3D" ? PLANES[plane] : ["y", "x"];
  view.width = sizeOf(cols);
  view.height = sizeOf(rows);
  // radiological display (the file's orientation): the patient's right on the left, the front (the head) at the
  // top; only what is shown is flipped, the image and its labels keep their voxel order
  const d = planeView();
  view.style.transform = `scale(${d.flip_x ? -1 : 1}, ${d.flip_y ? -1 : 1})`;
  for (const side of ["top", "bottom", "left", "right"]) $(`side-${side}`).textContent = d.sides[side] || "";
  for (const button of $("planes").children) button.classList.toggle("current", button.dataset.plane === plane);
  $("range-row").hidden = !(doc.dim === "3D" && plane === "z");  // propagation runs over slices
  $("slice").max = sizeOf(plane) - 1;
  fit();
  await showSlice(state.at[plane]);
}

function currentPlace() { return `${state.doc.id}/${state.plane}/${state.at[state.plane]}`; }

async function showSlice(z) {
  const doc = state.doc, plane = state.plane, n = doc.dim === "3D" ? sizeOf(plane) : 1;
  state.at[plane] = Math.max(0, Math.min(n - 1, z));
  $("slice").value = state.at[plane];
  $("slice-text").textContent = `${state.at[plane]} (0–${n - 1})` + (plane === "z" ? "" : ` · ${planeView().name || plane}`);
  const wanted = currentPlace(), index = state.at[plane];
  let image, overlay;
  try {
    [image, overlay] = await loadCut(plane, index);
  } catch (e) {
    if (doc === state.doc && wanted === currentPlace()) say(`slice ${index} cannot be shown: ${e.message}`, true);
    return;
  }
  if (doc !== state.doc || wanted !== currentPlace()) return;  // a newer slice (or case, or plane) was asked for meanwhile
  state.image = windowed(image);
  state.overlay = overlay;
  draw();
  showOthers();
}

async function refreshOverlay() {
  state.version += 1;
  showMeasurements();
  const doc = state.doc, wanted = currentPlace();
  const overlay = await loadImage(cutUrl("labels", state.plane, state.at[state.plane]));
  if (doc !== state.doc || wanted !== currentPlace()) return;  // the page moved on: showSlice loads the one wanted
  state.overlay = overlay;
  draw();
  showOthers();
}

async function showOthers() {
  // the two other planes of a volume, through the point shown, with a line where the large view's cut is
  const doc = state.doc;
  if (doc.dim !== "3D") return;
  const others = ["z", "y", "x"].filter((p) => p !== state.plane);
  await Promise.all(others.map(async (plane, k) => {
    const canvas = $(`other-${k}`), index = state.at[plane], wanted = currentPlace();
    let image, overlay;
    try {
      [image, overlay] = await loadCut(plane, index);
    } catch (e) { return; }  // the large view says it
    if (doc !== state.doc || wanted !== currentPlace() || index !== state.at[plane]) return;
    const [rows, cols] = PLANES[plane], d = planeView(plane);
    // drawn at the size shown (the cut stretched by its spacing), so that the line stays thin and sharp
    const w = Math.max(1, canvas.clientWidth), h = Math.max(1, Math.round(w * image.height * d.aspect / image.width));
    canvas.width = w;
    canvas.height = h;
    canvas.style.height = h + "px";
    canvas.style.transform = `scale(${d.flip_x ? -1 : 1}, ${d.flip_y ? -1 : 1})`;
    canvas.dataset.plane = plane;
    const c = canvas.getContext("2d");
    c.imageSmoothingEnabled = false;
    c.drawImage(image, 0, 0, w, h);
    c.globalAlpha = +$("opacity").value / 100;
    c.drawImage(overlay, 0, 0, w, h);
    c.globalAlpha = 1;
    c.strokeStyle = "#fc6";
    c.lineWidth = 2;
    const at = state.at[state.plane] + 0.5;
    c.beginPath();
    if (rows === state.plane) { const y = at * h / image.height; c.moveTo(0, y); c.lineTo(w, y); }
    else if (cols === state.plane) { const x = at * w / image.width; c.moveTo(x, 0); c.lineTo(x, h); }
    c.stroke();
    $(`other-${k}-name`).textContent = `${d.name || plane + " plane"} ${index} (click: show it large)`;
  }));
}
for (const k of [0, 1]) $(`other-${k}`).addEventListener("click", (e) => { if (e.target.dataset.plane) setPlane(e.target.dataset.plane); });

function fit() {
  // the image as large as the stage allows times the zoom, its pixels' aspect kept (the spacing: a cut across
  // thick slices is stretched as the patient is)
  const stage = $("stage"), aspect = planeView().aspect || 1;
  stage.style.overflow = state.zoom > 1 ? "auto" : "hidden";  // scroll bars only when zoomed in
  const scale = Math.min((stage.clientWidth - 16) / view.width, (stage.clientHeight - 16) / (view.height * aspect)) * state.zoom;
  view.style.width = Math.max(1, Math.floor(view.width * scale)) + "px";
  view.style.height = Math.max(1, Math.floor(view.height * aspect * scale)) + "px";
}
window.addEventListener("resize", () => { if (state.doc) { fit(); showOthers(); } });

function zoom(factor, at) {
  // zoom about ``at`` (a mouse event: the point under the mouse stays under it), else the stage's centre; 0: fit
  if (!state.doc) return;
  const stage = $("stage"), box = stage.getBoundingClientRect();
  const mx = at ? at.clientX - box.left : stage.clientWidth / 2, my = at ? at.clientY - box.top : stage.clientHeight / 2;
  const before = view.getBoundingClientRect();
  const fx = (box.left + mx - before.left) / Math.max(1, before.width), fy = (box.top + my - before.top) / Math.max(1, before.height);
  state.zoom = factor === 0 ? 1 : Math.max(1, Math.min(16, state.zoom * factor));
  fit();
  const after = view.getBoundingClientRect();
  stage.scrollLeft += after.left + fx * after.width - (box.left + mx);
  stage.scrollTop += after.top + fy * after.height - (box.top + my);
}

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
  if (state.line) {  // the RECIST line being drawn, with its length: a ruler
    const { x0, y0, x1, y1 } = state.line;
    ctx.strokeStyle = "#ff0";
    ctx.lineWidth = Math.max(1, view.width / 300);
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    ctx.fillStyle = "#ff0";
    ctx.font = `${Math.max(10, Math.round(view.width / 40))}px sans-serif`;
    ctx.fillText(`${lineMm(state.line).toFixed(1)} ${state.doc.spacing ? "mm" : "px"}`, x1 + 4, y1 - 4);
    $("ruler").textContent = `line: ${lineMm(state.line).toFixed(1)} ${state.doc.spacing ? "mm" : "pixels"}`;
  }
  const last = state.lastBox && state.lastBox.place === currentPlace() ? state.lastBox : null;
  for (const [box, dashed] of [[state.drag, false], [last, true]]) {  // the box being drawn; the last one drawn here
    if (!box) continue;
    const { x0, y0, x1, y1 } = box;
    ctx.strokeStyle = dashed ? "#9f9" : "#0f0";
    ctx.lineWidth = Math.max(1, view.width / 400);
    ctx.setLineDash(dashed ? [4 * ctx.lineWidth, 3 * ctx.lineWidth] : []);
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    ctx.setLineDash([]);
  }
}

function listObjects(objects) {
  if (state.selected !== null && !objects.some((o) => o.label === state.selected)) state.selected = null;  // undone
  const list = $("objects");
  list.replaceChildren();
  for (const o of objects) {
    const row = document.createElement("li");
    row.className = "object" + (o.label === state.selected ? " selected" : "");
    row.dataset.label = o.label;
    const pick = document.createElement("input");  // its colour, the user's to change
    pick.type = "color";
    pick.className = "swatch";
    pick.value = "#" + o.color.map((c) => c.toString(16).padStart(2, "0")).join("");
    pick.title = "its colour";
    pick.setAttribute("aria-label", `colour of label ${o.label}`);
    pick.onclick = (e) => e.stopPropagation();
    pick.onchange = () => rename(o.label, { color: [1, 3, 5].map((i) => parseInt(pick.value.slice(i, i + 2), 16)) });
    const name = document.createElement("textarea");  // its name (liver, tumour, …), shown whole, kept and saved
    name.className = "name";
    name.rows = 1;
    name.value = o.name || "";
    name.placeholder = "name";
    name.setAttribute("aria-label", `name of label ${o.label}`);
    name.maxLength = 64;
    const fitName = () => { name.style.height = "auto"; name.style.height = (name.scrollHeight + name.offsetHeight - name.clientHeight) + "px"; };
    name.oninput = fitName;
    requestAnimationFrame(fitName);
    name.onkeydown = (e) => { if (e.key === "Enter") { e.preventDefault(); name.blur(); } };  // Enter: done
    name.onclick = (e) => { e.stopPropagation(); select(o.label); };  // typing its name selects it
    name.onchange = () => rename(o.label, { name: name.value.replace(/\s+/g, " ").trim() });
    const text = document.createElement("span");
    text.className = "grow";
    text.textContent = `label ${o.label} · ${o.voxels} ${state.doc.dim === "3D" ? "vx" : "px"}`
      + (o.ml !== null && o.ml !== undefined ? ` · ${o.ml} mL` : "")
      + (typeof o.confidence === "number" ? ` · IoU ${o.confidence.toFixed(2)}` : "");
    if (typeof o.confidence === "number") text.title = "the model's own estimate of this mask's IoU (its confidence)";
    const remove = document.createElement("button");
    remove.textContent = "×";
    remove.title = "delete this object (Delete)";
    remove.setAttribute("aria-label", `delete label ${o.label}`);
    remove.onclick = (e) => { e.stopPropagation(); erase(o.label); };
    const about = document.createElement("span");
    about.className = "grow";
    about.append(name, text);
    const shown = document.createElement("input");  // show or hide it (the page's view only)
    shown.type = "checkbox";
    shown.checked = !state.hidden.has(o.label);
    shown.title = "shown (untick: hidden from view; it stays in the labels)";
    shown.setAttribute("aria-label", `show label ${o.label}`);
    shown.onclick = (e) => e.stopPropagation();
    shown.onchange = () => { if (shown.checked) state.hidden.delete(o.label); else state.hidden.add(o.label); listObjects(state.objects); refreshOverlay(); };
    const guard = (state.doc && state.doc.guard) || { over: "all", inside: null, locked: [] };
    const lock = document.createElement("button");
    lock.type = "button";
    lock.className = "lock";
    lock.textContent = guard.locked.includes(o.label) ? "locked" : "lock";
    lock.classList.toggle("on", guard.locked.includes(o.label));
    lock.title = guard.locked.includes(o.label) ? "locked: no edit changes it (click: unlock)" : "click: lock it (no edit changes it)";
    lock.setAttribute("aria-label", `${guard.locked.includes(o.label) ? "unlock" : "lock"} label ${o.label}`);
    lock.onclick = (e) => {
      e.stopPropagation();
      const locked = guard.locked.includes(o.label) ? guard.locked.filter((l) => l !== o.label) : [...guard.locked, o.label];
      setGuard({ ...guard, locked });
    };
    const inside = document.createElement("input");
    inside.type = "radio";
    inside.name = "inside";
    inside.checked = guard.inside === o.label;
    inside.title = "paint over: inside this object (with \"Paint over: the object ticked inside\")";
    inside.setAttribute("aria-label", `paint only inside label ${o.label}`);
    inside.onclick = (e) => { e.stopPropagation(); setGuard({ ...guard, over: "inside", inside: o.label }); };
    row.append(shown, pick, about, lock, inside, remove);
    row.classList.toggle("hidden-object", state.hidden.has(o.label));
    row.onclick = () => select(o.label);  // selecting again keeps it selected (Esc or "New object": none)
    row.tabIndex = 0;  // Tab reaches each object; Enter or Space selects it
    row.setAttribute("role", "option");
    row.setAttribute("aria-selected", String(o.label === state.selected));
    row.setAttribute("aria-label", `label ${o.label}${o.name ? " " + o.name : ""}, ${text.textContent.split(" · ").slice(1).join(", ")}`);
    row.onkeydown = (e) => {
      if (e.target === row && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); select(o.label); }
    };
    list.append(row);
  }
  state.objects = objects;
}

function select(label) {
  // the object the next brush stroke, click or redraw edits (null: the next one is new); the list is marked, not
  // rebuilt (a name being typed keeps its focus)
  state.selected = label;
  for (const row of $("objects").children) {
    row.classList.toggle("selected", +row.dataset.label === label);
    row.setAttribute("aria-selected", String(+row.dataset.label === label));
  }
}

async function setGuard(guard) {
  // what edits may paint over, and the locked objects (litemedsam.serve.labelmap.Guard)
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/guard`, guard);
    state.doc.guard = result.guard;
    $("over").value = result.guard.over;
    listObjects(result.objects);
    const g = result.guard;
    say(`paint over ${{ all: "everything", empty: "empty voxels only", inside: `label ${g.inside} only` }[g.over]}`
      + (g.locked.length ? `; locked: ${g.locked.join(", ")}` : ""));
  } catch (e) { say(e.message, true); $("over").value = state.doc.guard.over; }
}
$("over").onchange = () => {
  const guard = state.doc.guard, over = $("over").value;
  if (over === "inside" && state.selected === null && guard.inside === null) {
    say("tick the object to paint inside in the list (its round button), or select it first", true);
    $("over").value = guard.over;
    return;
  }
  setGuard({ ...guard, over, inside: over === "inside" ? (guard.inside ?? state.selected) : null });
};

function changed(result) {
  // what an edit did to other objects, said (never silently): the voxels it took, those the rules held back
  const c = result.change || {}, took = Object.entries(c.took || {});
  const unit = state.doc.dim === "3D" ? "voxels" : "pixels";
  return (took.length ? "; took " + took.map(([l, n]) => `${n} ${unit} from label ${l}`).join(", ")
    + " (Paint over: empty voxels only keeps them)" : "")
    + (c.held ? `; ${c.held} ${unit} of other or locked objects left as they were` : "")
    + (c.voxels === 0 ? "; nothing changed (Ctrl-Z takes back this step alone)" : "");
}

function offerFar(reachBack, region) {
  // a click far from its object changed nothing yet: "Reach back" applies it as it is (its ball reaches back to
  // the object), "Region instead" adds the model's region at it; offered until the next action
  const buttons = [$("reach-back"), $("region-instead")];
  for (const [button, act] of [[buttons[0], reachBack], [buttons[1], region]]) {
    button.hidden = false;
    button.onclick = () => { for (const b of buttons) b.hidden = true; act(); };
  }
  buttons[0].focus();
}
document.addEventListener("mousedown", (e) => {
  if (e.target !== $("region-instead") && e.target !== $("reach-back")) $("region-instead").hidden = $("reach-back").hidden = true;
}, true);

function seconds(ms) { return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`; }
function busyNote() { say("busy: the last edit is still running (wait for it, or Cancel)", true); }

function imagePoint(event) {
  // the image pixel under the mouse, through the display's flips
  const rect = view.getBoundingClientRect(), d = planeView();
  const x = Math.max(0, Math.min(view.width - 1, Math.floor((event.clientX - rect.left) * view.width / rect.width)));
  const y = Math.max(0, Math.min(view.height - 1, Math.floor((event.clientY - rect.top) * view.height / rect.height)));
  return { x: d.flip_x ? view.width - 1 - x : x, y: d.flip_y ? view.height - 1 - y : y };
}

function tool() { return document.querySelector('input[name="tool"]:checked').value; }

view.addEventListener("mousedown", (e) => {
  if (!state.doc) return;
  if (e.button === 1 || e.shiftKey) {  // pan: the middle button, or Shift and drag
    e.preventDefault();
    const stage = $("stage");
    state.pan = { x: e.clientX, y: e.clientY, left: stage.scrollLeft, top: stage.scrollTop };
    stage.classList.add("panning");
    return;
  }
  if ((e.button === 0 || e.button === 2) && state.busy) { busyNote(); return; }
  if (e.button === 2 && tool() === "click") { sendClick(imagePoint(e), "bg"); return; }
  if (e.button !== 0) return;
  const p = imagePoint(e);
  if (tool() === "click") { sendClick(p, e.altKey ? "bg" : "fg"); return; }
  if (tool() === "box") state.drag = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
  else if (tool() === "line") state.line = { x0: p.x, y0: p.y, x1: p.x, y1: p.y };
  else state.stroke = { points: [[p.x, p.y]], erase: tool() === "eraser",
                        radius: Math.max(1, Math.min(200, parseInt($("brush-size").value, 10) || 4)),
                        threshold: $("threshold").checked && tool() === "brush" ? thresholdAt(p) : null,
                        sphere: $("sphere").checked && state.doc.dim === "3D" };
});
window.addEventListener("mousemove", (e) => {
  if (state.pan) {
    $("stage").scrollLeft = state.pan.left - (e.clientX - state.pan.x);
    $("stage").scrollTop = state.pan.top - (e.clientY - state.pan.y);
    return;
  }
  if (state.stroke) {
    const p = imagePoint(e), last = state.stroke.points[state.stroke.points.length - 1];
    if ((p.x !== last[0] || p.y !== last[1]) && state.stroke.points.length < 10000) state.stroke.points.push([p.x, p.y]);
    draw();
    return;
  }
  const moving = state.drag || state.line;
  if (!moving) return;
  const p = imagePoint(e);
  moving.x1 = p.x;
  moving.y1 = p.y;
  draw();
});

function lineMm(line) {
  // a line's length in mm, by the spacing of the plane shown (pixels where the file gives none)
  const mm = state.doc.spacing, axes = { z: [2, 1], y: [2, 0], x: [1, 0] }[state.plane];
  const [sx, sy] = mm ? axes.map((a) => mm[a]) : [1, 1];
  return Math.hypot((line.x1 - line.x0) * sx, (line.y1 - line.y0) * sy);
}

async function sendLine(line) {
  // a RECIST line: its lesion in 3D, a new object (the label typed, else the next free one)
  const doc = state.doc, typed = typedLabel(), unit = doc.spacing ? "mm" : "pixels";
  if ((state.objects || []).some((o) => o.label === typed)) {
    say(`label ${typed} is already an object: a line makes a new one (type a free label)`, true);
    return;
  }
  state.busy = true;
  const start = performance.now();
  try {
    let result = await api("POST", `/api/doc/${doc.id}/line`,
      { z: state.at[state.plane], plane: state.plane, line: [line.x0, line.y0, line.x1, line.y1], label: typed });
    if (result.job) result = await follow(doc);
    if (result && doc === state.doc) {
      listObjects(result.objects);
      await refreshOverlay();
      say(`label ${result.label}: the lesion of a ${lineMm(line).toFixed(1)} ${unit} line, in ${seconds(performance.now() - start)}`
        + changed(result));
      $("next-label").value = "";
    }
  } catch (e) { if (doc === state.doc) say(e.message, true); }
  if (doc === state.doc) state.busy = false;
}
function thresholdAt(p) {
  // the range of values the threshold brush paints: the first point's value (0-255, as the model sees it) ± the range
  const i = 4 * (p.y * state.pixels.width + p.x), value = state.pixels.data[i], range = +$("threshold-range").value || 20;
  return [Math.max(0, value - range), Math.min(255, value + range)];
}

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
      { z: state.at[state.plane], plane: state.plane, points: stroke.points, radius: stroke.radius, label,
        within: stroke.threshold, sphere: stroke.sphere });
    if (doc !== state.doc) return;
    if (!stroke.erase && state.selected === null) state.selected = result.label;  // keep painting the same object
    listObjects(result.objects);
    await refreshOverlay();
    say((stroke.erase ? "erased" : `label ${result.label} painted`) + (stroke.threshold ? ` within ${stroke.threshold.join("–")}` : "")
      + changed(result));
  } catch (e) { say(e.message, true); draw(); }
}
window.addEventListener("mouseup", async () => {
  if (state.pan) { state.pan = null; $("stage").classList.remove("panning"); return; }
  if (state.stroke) {
    const stroke = state.stroke;
    state.stroke = null;
    await sendStroke(stroke);
    return;
  }
  if (state.line) {
    const line = state.line;
    state.line = null;
    draw();
    if (Math.hypot(line.x1 - line.x0, line.y1 - line.y0) < 2) return;
    await sendLine(line);
    return;
  }
  const d = state.drag;
  if (!d) return;
  state.drag = null;
  draw();
  if (Math.abs(d.x1 - d.x0) < 2 || Math.abs(d.y1 - d.y0) < 2) return;
  state.lastBox = { ...d, place: currentPlace() };  // stays drawn (dashed) on this slice until the next box
  draw();
  await segmentBox([Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)]);
});

view.addEventListener("contextmenu", (e) => { if (tool() === "click") e.preventDefault(); });

async function sendClick(p, kind, region = false, reachBack = false) {
  // a click on the selected object (a new one for a foreground click when none is selected), as infer applies
  // the 2025 challenge's clicks: the object grows (fg) or shrinks (bg) around it
  const doc = state.doc, typed = typedLabel();
  if (state.selected === null && kind === "bg") { say("select the object that is not here", true); return; }
  if (state.selected === null && (state.objects || []).some((o) => o.label === typed)) {
    say(`label ${typed} is already an object: select it to click on it, or type a free label`, true);
    return;
  }
  state.busy = true;
  const start = performance.now(), body = { z: state.at[state.plane], plane: state.plane, x: p.x, y: p.y, kind,
    label: state.selected ?? typed, region, reach_back: reachBack };
  if (doc.dim === "3D" && state.plane === "z" && $("propagate").checked) {  // where a new region may reach
    body.z_range = [Math.min(+$("z0").value, +$("z1").value), Math.max(+$("z0").value, +$("z1").value)];
  }
  try {
    say(`label ${body.label ?? "new"}: clicking …`);
    let result = await api("POST", `/api/doc/${doc.id}/click`, body);
    if (result.job) result = await follow(doc);
    if (!result || doc !== state.doc) return;
    state.selected = result.label;
    const change = result.change || {}, unit = doc.spacing ? "mm" : "pixels";
    if (change.asked) {  // nothing changed yet: the user chooses
      say(`label ${result.label}: the click is ${change.far} ${unit} from the object: "Reach back" grows the object `
        + `to it over what lies between, "Region instead" adds what the model finds at the click (nothing changed yet)`);
      offerFar(() => sendClick(p, kind, false, true), () => sendClick(p, kind, true));
      return;
    }
    listObjects(result.objects);
    await refreshOverlay();
    say(`label ${result.label}: ${region ? "the region here added" : kind === "fg" ? "here" : "not here"} `
      + `(${seconds(performance.now() - start)})` + changed(result)
      + (change.far ? `; it reached back ${change.far} ${unit} to the object` : ""));
  } catch (e) { if (doc === state.doc) say(e.message, true); }
  finally { if (doc === state.doc) state.busy = false; }
}

async function segmentBox(box) {
  const doc = state.doc;
  const redraw = $("redraw").checked && state.selected !== null;  // a box makes a new object unless asked to redraw
  const body = { box, z: state.at[state.plane], plane: state.plane, label: redraw ? state.selected : typedLabel(),
    mode: redraw ? "replace" : "new" };  // a typed label that is taken is refused, never replaced
  if (doc.dim === "3D" && state.plane === "z" && $("propagate").checked) {
    const z0 = Math.min(+$("z0").value, +$("z1").value), z1 = Math.max(+$("z0").value, +$("z1").value);
    if (state.at.z < z0 || state.at.z > z1) {  // never stretch the range the user set without saying so
      say(`slice ${state.at.z} is outside the range ${z0}–${z1}: set "from" and "to" to include it, or untick propagate`, true);
      return;
    }
    body.z_range = [z0, z1];
  }
  state.busy = true;
  const start = performance.now();
  try {
    let result = await api("POST", `/api/doc/${doc.id}/box`, body);
    if (result.job) result = await follow(doc);
    if (result && doc === state.doc) {
      listObjects(result.objects);
      await refreshOverlay();
      const where = body.z_range && body.z_range[0] !== body.z_range[1] ? ` propagated over slices ${body.z_range[0]}–${body.z_range[1]}` : "";
      say((redraw ? `label ${result.label} redrawn (${result.was} → ${(result.objects.find((o) => o.label === result.label) || { voxels: 0 }).voxels} ${doc.dim === "3D" ? "voxels" : "pixels"})`
        : `label ${result.label}: new object`) + `${where} in ${seconds(performance.now() - start)}` + changed(result));
      state.selected = null;  // the next box is a new object again
      $("redraw").checked = false;
      $("next-label").value = "";
      listObjects(state.objects);
    }
  } catch (e) { if (doc === state.doc) say(e.message, true); }
  if (doc === state.doc) state.busy = false;  // another case opened meanwhile is not waiting for this one
}

async function follow(doc) {
  // a job of the case (a propagation, a volume's click): its progress and Cancel until it ends; its result
  // (objects, label) when done, else null (said)
  $("job").hidden = false;
  try {
    for (;;) {
      const job = await api("GET", `/api/doc/${doc.id}/job`);
      if (doc !== state.doc) return null;  // another case is open: its page is not this job's (the job goes on)
      $("job-bar").max = Math.max(1, job.total);
      $("job-bar").value = job.total ? job.done : 0;
      if (!job.total) $("job-bar").removeAttribute("value");  // of an unknown total: indeterminate
      say(`${job.doing}: ` + (job.total ? `${job.done} / ${job.total} slices` : `${job.done} slices read`) + " (Cancel stops it)");
      if (job.state === "done") return job;
      if (job.state !== "running") { say(job.message, job.state === "failed"); return null; }
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

async function rename(label, change) {
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/objects/${label}`, change);
    listObjects(result.objects);
    await refreshOverlay();
    say(`label ${label} ${change.name !== undefined ? "named" : "recoloured"}`);
  } catch (e) { say(e.message, true); }
}

async function tidy(action) {
  // the selected object on this slice: its holes filled, or its islands removed
  if (state.selected === null) { say("select an object first", true); return; }
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/tidy`,
      { z: state.at[state.plane], plane: state.plane, label: state.selected, action });
    listObjects(result.objects);
    await refreshOverlay();
    say(`label ${state.selected}: ${result.changed} pixels ${action === "fill" ? "filled" : "removed"}`);
  } catch (e) { say(e.message, true); }
}
async function interpolate() {
  if (state.selected === null) { say("select an object first (drawn on two or more slices)", true); return; }
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/interpolate`, { label: state.selected, plane: state.plane });
    listObjects(result.objects);
    await refreshOverlay();
    say(`label ${state.selected}: ${result.added} voxels filled between the slices it is drawn on` + changed(result));
  } catch (e) { say(e.message, true); }
}
$("interpolate").onclick = interpolate;

async function showMeasurements() {
  // each object's size, values and RECIST diameters (what Save writes beside the output)
  if (!state.doc || !$("measure-panel").open) return;
  const table = $("measurements");
  try {
    const result = await api("GET", `/api/doc/${state.doc.id}/measurements`);
    const head = ["label", "name", "mL", "mean", "min", "max", "long", "short", "slice"];
    table.replaceChildren(...[head, ...result.objects.map((o) => [o.label, o.name, o.ml ?? o.voxels + " px", o.mean, o.min, o.max,
      o.long_mm, o.short_mm, o.slice ?? ""])].map((cells, i) => {
      const row = document.createElement("tr");
      for (const c of cells) { const cell = document.createElement(i ? "td" : "th"); cell.textContent = c; row.append(cell); }
      return row;
    }));
  } catch (e) { say(e.message, true); }
}
$("measure-panel").addEventListener("toggle", showMeasurements);
$("fill").onclick = () => tidy("fill");
$("islands").onclick = () => tidy("islands");

async function undo(again = false) {
  const step = again ? "redo" : "undo";
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/${step}`);
    listObjects(result.objects);
    await refreshOverlay();
    const held = (result.change || {}).held;
    say(result[again ? "redone" : "undone"]
      ? `${step} done` + (held ? ` (${held} ${state.doc.dim === "3D" ? "voxels" : "pixels"} changed since by another edit, or locked, left as they are)` : "")
      : `nothing of this tab's to ${step}`);
  } catch (e) { say(e.message, true); }
}

async function save() {
  // never while an edit runs (its object would be missing from the output); an untouched case is saved (empty)
  // only when Save is asked for again
  if (state.busy) { say("an edit is still running on this case: Save when it ends (or Cancel it)", true); return false; }
  const empty = state.saveEmpty === state.doc.id;
  state.saveEmpty = null;
  try {
    const result = await api("POST", `/api/doc/${state.doc.id}/save`, { empty });
    say(`saved ${result.saved} in ${result.folder}` + (result.measurements ? ` (and its measurements, ${result.measurements})`
      : `; ${result.problem}`), !result.measurements);
    await listCases();
    return true;
  } catch (e) {
    if (e.message.startsWith("nothing is drawn")) state.saveEmpty = state.doc.id;  // Save again: saved empty
    say(e.message, true);
    return false;
  }
}

async function saveAndNext() {
  // an annotator's pace: save this case, open the next of the list
  const name = state.doc.name, next = state.cases[state.cases.indexOf(name) + 1];
  const untouched = !(state.objects || []).length && $("unsaved").hidden && !state.busy;
  if (untouched && next !== undefined) {  // skipped, not saved empty (Save saves it empty, when asked twice)
    await openCase(next);
    say(`${name}: nothing drawn, skipped (not saved); ${next} open`);
    return;
  }
  if (!(await save())) return;
  if (next === undefined) { say(`${name} saved: it was the last case of the list`); return; }
  await openCase(next);
}
$("save-next").onclick = saveAndNext;

$("slice").addEventListener("input", () => showSlice(+$("slice").value));
view.addEventListener("wheel", (e) => {
  if (!state.doc) return;
  e.preventDefault();
  if (e.ctrlKey || e.metaKey) zoom(e.deltaY > 0 ? 1 / 1.25 : 1.25, e);
  else if (state.doc.dim === "3D") showSlice(state.at[state.plane] + (e.deltaY < 0 ? 1 : -1));  // up: next, as ArrowUp
}, { passive: false });
view.addEventListener("dblclick", (e) => {  // the other views through this point
  if (!state.doc || state.doc.dim !== "3D") return;
  const p = imagePoint(e), [rows, cols] = PLANES[state.plane];
  state.at[rows] = p.y;
  state.at[cols] = p.x;
  showOthers();
});
let cursorAsked = null, cursorBusy = false;
async function showCursor() {
  // the voxel under the mouse and, for a volume read with its own intensities, its value (HU for a CT); one
  // request at a time, the latest position asked next
  if (cursorBusy || !cursorAsked) return;
  const { doc, voxel } = cursorAsked;
  cursorAsked = null;
  const where = doc.dim === "3D" ? `x ${voxel.x}, y ${voxel.y}, z ${voxel.z}` : `x ${voxel.x}, y ${voxel.y}`;
  $("cursor").textContent = where;
  if (!doc.raw || doc.dim !== "3D") return;
  cursorBusy = true;
  try {
    const v = await api("GET", `/api/doc/${doc.id}/value?z=${voxel.z}&y=${voxel.y}&x=${voxel.x}`);
    if (doc === state.doc && v.value !== null) $("cursor").textContent = `${where}: ${Math.round(v.value * 100) / 100}${v.unit ? " " + v.unit : ""}`;
  } catch (e) { /* the slice view says when the server is gone */ }
  cursorBusy = false;
  showCursor();
}
view.addEventListener("mousemove", (e) => {
  if (!state.doc || state.pan) return;
  const p = imagePoint(e), voxel = { ...state.at };
  if (state.doc.dim === "3D") { const [rows, cols] = PLANES[state.plane]; voxel[rows] = p.y; voxel[cols] = p.x; }
  else { voxel.y = p.y; voxel.x = p.x; }
  cursorAsked = { doc: state.doc, voxel };
  showCursor();
});
$("zoom-in").onclick = () => zoom(1.25);
$("zoom-out").onclick = () => zoom(1 / 1.25);
$("zoom-fit").onclick = () => zoom(0);
for (const id of ["level", "width"]) $(id).addEventListener("input", () => {
  $(`${id}-value`).textContent = $(id).value;  // its number beside it (of the 0-255 image shown)
  if (state.image) { applyWindow(state.image); draw(); }
});
$("opacity").addEventListener("input", draw);
$("set-z0").onclick = () => { $("z0").value = state.at.z; };
$("set-z1").onclick = () => { $("z1").value = state.at.z; };
$("new").onclick = () => { state.selected = null; listObjects(state.objects || []); };
$("undo").onclick = () => undo();
$("redo").onclick = () => undo(true);
async function setWindow(window) {
  // the model window (what the model sees, as infer's --window); null: as infer reads the file without one
  try {
    const doc = await api("POST", `/api/doc/${state.doc.id}/window`, { window });
    state.doc = doc;
    state.windowVersion += 1;  // the slices shown (and beside) are read again, through the new window
    $("mw-level").value = doc.window ? doc.window[0] : "";
    $("mw-width").value = doc.window ? doc.window[1] : "";
    await showSlice(state.at[state.plane]);
    say((doc.window ? `model window ${doc.window[0]}, ${doc.window[1]}` : "model window auto (percentile clipping)")
      + ": the next boxes see the image so");
  } catch (e) { say(e.message, true); }
}
$("mw-apply").onclick = () => setWindow([+$("mw-level").value, +$("mw-width").value]);
$("mw-preset").onchange = () => {  // a preset: set as the model window, as typed; auto: as infer reads the file
  const [level, width] = $("mw-preset").value.split(",");
  $("mw-preset").value = "";
  if (level === "auto") { setWindow(null); return; }
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
function typing(target) {
  // a control whose keys are its own: a field text is typed into, a drop-down list (arrows and letters pick in
  // it); not a slider, a checkbox, a radio button
  return target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable
    || (target.tagName === "INPUT" && !["range", "checkbox", "radio", "button", "color"].includes(target.type));
}
window.addEventListener("keydown", (e) => {
  if (!state.doc) return;
  const ctrl = e.ctrlKey || e.metaKey, key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  if (ctrl && key === "s") {  // wherever the focus is: the browser's "Save page as" is never what is meant here
    e.preventDefault();
    save();
    return;
  }
  if (typing(e.target)) return;
  let handled = true;
  if (ctrl && (key === "y" || (key === "z" && e.shiftKey))) undo(true);
  else if (ctrl && key === "z") undo();
  else if (!ctrl && (["b", "e", "x", "c"].includes(key) || (key === "l" && state.doc && state.doc.dim === "3D"))) {
    document.querySelector(`input[name="tool"][value="${{ b: "brush", e: "eraser", x: "box", c: "click", l: "line" }[key]}"]`).checked = true;
  }
  else if (!ctrl && key === "n") saveAndNext();
  else if (key === "Escape") { state.selected = null; listObjects(state.objects || []); }
  else if (key === "Delete" && state.selected) erase(state.selected);
  else if (key === "ArrowUp" || key === "PageUp") showSlice(state.at[state.plane] + 1);
  else if (key === "ArrowDown" || key === "PageDown") showSlice(state.at[state.plane] - 1);
  else if (key === "+" || key === "=") zoom(1.25);
  else if (key === "-") zoom(1 / 1.25);
  else if (key === "0") zoom(0);
  else handled = false;
  if (handled) {  // not also the focused control's (an arrow key would change the tool or a slider)
    e.preventDefault();
    if (e.target !== document.body && e.target.blur) e.target.blur();
  }
});

listCases().catch((e) => say(e.message, true));
