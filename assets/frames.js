// Linked views (app.LINK_FRAMES runs this once per page): one frame position shared by each tab's overlay video,
// its per-frame importance plot and the numbered frame strip of the clip column. The overlay plays `fps` frames a
// second; the strip shows the clip's frames in rows of `columns` with `gap` white pixels between them.
// Clicking a frame in the plot or the strip shows that frame of the overlay, paused; the frame on screen is
// marked in the plot (a band) and in the strip (an outline).
(fps, columns, gap) => {
  const TABS = ["explain", "compare", "learn"];
  const overlay = (tab) => document.querySelector(`#${tab}-overlay video`);
  const count = (video) => Math.round(video.duration * fps);
  const current = (video) => Math.min(Math.floor(video.currentTime * fps + 1e-3), count(video) - 1);

  const show = (frame) => {
    for (const tab of TABS) {
      const video = overlay(tab);
      if (video && video.duration && frame < count(video)) {
        video.pause();
        video.currentTime = (frame + 0.5) / fps;
      }
    }
  };

  const marker = (parent, name, style) => {
    let box = parent.querySelector(`:scope > .${name}`);
    if (!box) {
      box = document.createElement("div");
      box.className = name;
      Object.assign(box.style, {position: "absolute", pointerEvents: "none", zIndex: 10, ...style});
      if (getComputedStyle(parent).position === "static") parent.style.position = "relative";
      parent.appendChild(box);
    }
    return box;
  };

  // The strip image's tiles in page pixels: where the picture sits in its box (it is scaled to fit) and each
  // tile's size, for a clip of `frames` frames.
  const tiles = (img, frames) => {
    const r = img.getBoundingClientRect();
    const scale = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const cols = Math.min(columns, frames), rows = Math.ceil(frames / cols);
    return {
      left: r.left + (r.width - img.naturalWidth * scale) / 2, top: r.top + (r.height - img.naturalHeight * scale) / 2,
      scale, cols, width: (img.naturalWidth - (cols - 1) * gap) / cols, height: (img.naturalHeight - (rows - 1) * gap) / rows,
    };
  };

  const markPlot = (tab, frame) => {
    const plot = document.querySelector(`#${tab}-importance .js-plotly-plot`);
    const layout = plot && plot._fullLayout;
    if (!layout || !layout.xaxis || !layout.xaxis.l2p) return;
    const x = layout.xaxis, y = layout.yaxis;
    const band = marker(plot, "frame-marker", {background: "rgba(0, 0, 0, 0.12)", borderLeft: "1px solid #000",
                                               borderRight: "1px solid #000"});
    const left = x._offset + x.l2p(frame - 0.5), right = x._offset + x.l2p(frame + 0.5);
    Object.assign(band.style, {left: `${left}px`, width: `${right - left}px`, top: `${y._offset}px`,
                               height: `${y._length}px`});
    band.dataset.frame = frame;
  };

  const markStrip = (frame, frames) => {
    const img = document.querySelector("#clip-strip img");
    if (!img || !img.naturalWidth) return;
    const t = tiles(img, frames), parent = img.parentElement.getBoundingClientRect();
    const outline = marker(img.parentElement, "frame-marker", {border: "3px solid #f60", boxSizing: "border-box"});
    const col = frame % t.cols, row = Math.floor(frame / t.cols);
    Object.assign(outline.style, {
      left: `${t.left - parent.left + col * (t.width + gap) * t.scale}px`, width: `${t.width * t.scale}px`,
      top: `${t.top - parent.top + row * (t.height + gap) * t.scale}px`, height: `${t.height * t.scale}px`,
    });
    outline.dataset.frame = frame;
  };

  const follow = (tab, video) => {
    const update = () => {
      if (!video.duration || video.offsetParent === null) return;      // another tab's overlay
      const frame = current(video);
      markPlot(tab, frame);
      markStrip(frame, count(video));
    };
    video.addEventListener("seeked", update);
    video.addEventListener("timeupdate", update);
    if (video.requestVideoFrameCallback) {
      const each = () => { update(); video.requestVideoFrameCallback(each); };
      video.requestVideoFrameCallback(each);
    }
  };

  const link = () => {
    for (const tab of TABS) {
      const video = overlay(tab);
      if (video && !video.dataset.linked) {
        video.dataset.linked = "yes";
        follow(tab, video);
      }
      const plot = document.querySelector(`#${tab}-importance .js-plotly-plot`);
      if (plot && plot.on && !plot.dataset.linked) {
        plot.dataset.linked = "yes";
        plot.on("plotly_click", (event) => show(Math.round(event.points[0].x)));
      }
    }
    const img = document.querySelector("#clip-strip img");
    if (img && !img.dataset.linked) {
      img.dataset.linked = "yes";
      img.addEventListener("click", (event) => {
        const video = TABS.map(overlay).find((v) => v && v.duration && v.offsetParent !== null);
        if (!video) return;                                   // nothing explained yet
        const t = tiles(img, count(video));
        const col = Math.floor((event.clientX - t.left) / ((t.width + gap) * t.scale));
        const row = Math.floor((event.clientY - t.top) / ((t.height + gap) * t.scale));
        if (col >= 0 && col < t.cols && row >= 0) show(row * t.cols + col);
      });
    }
  };
  setInterval(link, 500);
}
