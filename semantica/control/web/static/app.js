// The live parts of Semantica's web view. No framework, nothing from elsewhere.
//
// * An element with data-live="/live/..." is redrawn with each server-sent event's data:
//   a fragment our own server rendered from its templates, with every value from a job
//   escaped (and the page's Content-Security-Policy runs no inline script in any case).
// * An element with data-follow="/live/log/ID" gets each event's lines added as text
//   (createTextNode: a log line is never read as HTML), and keeps to the bottom unless
//   the reader scrolled up. A log (followed or not) opens at its end.
// EventSource reconnects by itself; an "end" event closes the stream for good.
"use strict";

(function () {
  function stale(el, yes) {
    el.classList.toggle("stale", yes);
  }

  // A form field inside a live part (a queue's limit being typed, a button being pressed)
  // is not redrawn under the reader's hands: while one has focus, the latest fragment
  // waits, and is drawn a moment after focus leaves the part (after a click completes).
  function busy(el) {
    const active = document.activeElement;
    return active !== null && el.contains(active) &&
      active.matches("input, select, textarea, button");
  }

  // A browser opens at most six connections to one HTTP/1.1 server, and each live part
  // holds one: the parts of a tab nobody looks at let go of theirs, and draw again (a whole
  // fragment) when the tab is shown.
  const parts = [];

  function live(el) {
    const part = { el: el, source: null, ended: false };
    let held = null;
    function draw(html) {
      if (busy(el)) {
        held = html;
        return;
      }
      held = null;
      el.innerHTML = html;
      stale(el, false);
    }
    el.addEventListener("focusout", function () {
      setTimeout(function () {
        if (held !== null) {
          draw(held);
        }
      }, 500);
    });
    part.open = function () {
      if (part.source || part.ended) {
        return;
      }
      const source = new EventSource(el.dataset.live);
      source.onmessage = function (event) { draw(event.data); };
      source.onerror = function () { stale(el, true); };
      source.addEventListener("end", function () {
        part.ended = true;
        part.close();
      });
      part.source = source;
    };
    part.close = function () {
      if (part.source) {
        part.source.close();
        part.source = null;
      }
    };
    parts.push(part);
    part.open();
  }

  document.addEventListener("visibilitychange", function () {
    parts.forEach(function (part) {
      if (document.hidden) {
        part.close();
      } else {
        part.open();
      }
    });
  });

  function follow(el) {
    const source = new EventSource(el.dataset.follow);
    source.onmessage = function (event) {
      const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
      el.appendChild(document.createTextNode(event.data + "\n"));
      if (atBottom) {
        el.scrollTop = el.scrollHeight;
      }
      stale(el, false);
    };
    source.onerror = function () { stale(el, true); };
    source.addEventListener("end", function () {
      source.close();
      el.dataset.ended = "true";
      stale(el, false);
    });
  }

  // A log comes with its lines so far: it opens at their end, as tail does (a followed
  // log that opened at its top would never count as at the bottom, and never follow).
  document.querySelectorAll("pre.log").forEach(function (el) {
    el.scrollTop = el.scrollHeight;
  });
  document.querySelectorAll("[data-live]").forEach(live);
  document.querySelectorAll("[data-follow]").forEach(follow);
})();
