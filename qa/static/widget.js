/*
 * 智慧名城 QA — one-tag chat widget. No dependencies, nothing from a CDN.
 *
 *   <script src="http://HOST:PORT/widget.js" defer
 *           data-title="问专家" data-position="bottom-right" data-lang="zh"></script>
 *
 * Adds a floating button; clicking it opens the chat (HOST:PORT/embed/) in a panel.
 * Options (all optional):
 *   data-title     panel title and button label   (default 智慧名城 QA / Smart City Q&A)
 *   data-position  bottom-right | bottom-left | top-right | top-left   (default bottom-right)
 *   data-lang      zh | en: the widget's own words and the chat's placeholder   (default zh)
 *   data-open      "true" to start with the panel open
 *   data-width / data-height   panel size in CSS px (default 400 × 620)
 * Styles live in a shadow root, so the host page's CSS and ours never meet.
 */
(function () {
  "use strict";
  if (window.__zhihuiQaWidget) return; // included twice: one button is enough
  window.__zhihuiQaWidget = true;

  var script =
    document.currentScript ||
    (function () {
      var all = document.querySelectorAll('script[src*="widget.js"]');
      return all[all.length - 1];
    })();
  if (!script) return;

  var base = new URL(script.src, location.href);
  var appRoot = base.href.replace(/widget\.js(?:[?#].*)?$/, "");
  var data = script.dataset || {};
  var lang = (data.lang || "zh").toLowerCase().indexOf("en") === 0 ? "en" : "zh";
  var words = {
    zh: { title: "智慧名城 QA", open: "问专家", close: "关闭", newTab: "在新窗口打开" },
    en: { title: "Smart City Q&A", open: "Ask the experts", close: "Close", newTab: "Open in a new tab" }
  }[lang];
  var title = data.title || words.title;
  var pos = (data.position || "bottom-right").toLowerCase();
  var vertical = pos.indexOf("top") === 0 ? "top" : "bottom";
  var horizontal = pos.indexOf("left") >= 0 ? "left" : "right";
  var width = parseInt(data.width, 10) || 400;
  var height = parseInt(data.height, 10) || 620;

  function start() {
    var host = document.createElement("div");
    host.id = "zhihui-qa-widget";
    host.setAttribute("data-qa-widget", "");
    // Fixed, top of the stack, and immune to the page's own rules for divs.
    host.style.cssText = "all:initial;position:fixed;z-index:2147483000;" + vertical + ":0;" + horizontal + ":0;";
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;

    var style = document.createElement("style");
    style.textContent = [
      ":host{all:initial}",
      "*{box-sizing:border-box;font-family:'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',system-ui,sans-serif}",
      ".btn{position:fixed;" + vertical + ":20px;" + horizontal + ":20px;height:52px;min-width:52px;padding:0 18px 0 14px;",
      "border:0;border-radius:26px;background:#b4232a;color:#fff;display:flex;align-items:center;gap:8px;",
      "font-size:15px;font-weight:600;cursor:pointer;box-shadow:0 6px 20px rgba(0,0,0,.22);transition:transform .15s}",
      ".btn:hover{transform:translateY(-1px)}.btn:focus-visible{outline:3px solid #f4b4b8;outline-offset:2px}",
      ".btn svg{width:22px;height:22px;flex:none}",
      ".panel{position:fixed;" + vertical + ":84px;" + horizontal + ":20px;width:" + width + "px;height:" + height + "px;",
      "max-width:calc(100vw - 24px);max-height:calc(100vh - 104px);background:#fff;border-radius:14px;",
      "box-shadow:0 12px 40px rgba(0,0,0,.28);display:none;flex-direction:column;overflow:hidden;border:1px solid #e6e1dc}",
      ".panel.open{display:flex}",
      ".bar{display:flex;align-items:center;gap:8px;padding:10px 12px;background:#b4232a;color:#fff}",
      ".bar .t{flex:1;font-size:15px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}",
      ".bar a,.bar button{color:#fff;background:transparent;border:0;cursor:pointer;font-size:13px;text-decoration:none;",
      "padding:4px 6px;border-radius:6px}.bar a:hover,.bar button:hover{background:rgba(255,255,255,.16)}",
      ".bar .x{font-size:20px;line-height:1}",
      "iframe{flex:1;width:100%;border:0;background:#fff}",
      "@media (max-width:480px){.panel{" + horizontal + ":0;" + vertical + ":0;width:100vw;height:100vh;max-width:100vw;max-height:100vh;border-radius:0}}"
    ].join("");
    root.appendChild(style);

    var btn = document.createElement("button");
    btn.className = "btn";
    btn.type = "button";
    btn.setAttribute("aria-haspopup", "dialog");
    btn.setAttribute("aria-expanded", "false");
    btn.setAttribute("aria-label", title + " — " + words.open);
    btn.title = title;
    btn.innerHTML =
      '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">' +
      '<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20.5l1.4-4.9A8 8 0 1 1 21 12z"/></svg>';
    var label = document.createElement("span");
    label.textContent = words.open; // textContent: a data-title can never inject markup
    btn.appendChild(label);

    var panel = document.createElement("div");
    panel.className = "panel";
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", title);
    var bar = document.createElement("div");
    bar.className = "bar";
    var t = document.createElement("span");
    t.className = "t";
    t.textContent = title;
    var chatUrl = appRoot + "embed/?lang=" + lang;
    var full = document.createElement("a");
    full.href = appRoot;
    full.target = "_blank";
    full.rel = "noopener";
    full.textContent = "↗";
    full.title = words.newTab;
    full.setAttribute("aria-label", words.newTab);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "x";
    close.textContent = "×";
    close.title = words.close;
    close.setAttribute("aria-label", words.close);
    bar.appendChild(t);
    bar.appendChild(full);
    bar.appendChild(close);
    panel.appendChild(bar);

    var frame = null;
    function setOpen(open) {
      if (open && !frame) {
        // Created on first open: a page with the widget pays nothing until it is used.
        frame = document.createElement("iframe");
        frame.src = chatUrl;
        frame.title = title;
        frame.setAttribute("allow", "clipboard-write");
        panel.appendChild(frame);
      }
      panel.classList.toggle("open", open);
      btn.setAttribute("aria-expanded", open ? "true" : "false");
      if (!open) btn.focus();
    }
    btn.addEventListener("click", function () {
      setOpen(!panel.classList.contains("open"));
    });
    close.addEventListener("click", function () {
      setOpen(false);
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && panel.classList.contains("open")) setOpen(false);
    });
    // Escape pressed inside the chat frame arrives as a message from the app's origin.
    window.addEventListener("message", function (e) {
      if (e.origin === base.origin && e.data && e.data.zhihuiQa === "close") setOpen(false);
    });

    root.appendChild(panel);
    root.appendChild(btn);
    document.body.appendChild(host);
    if (String(data.open).toLowerCase() === "true") setOpen(true);
    window.zhihuiQa = { open: function () { setOpen(true); }, close: function () { setOpen(false); } };
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
