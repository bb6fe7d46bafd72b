/* runsync ui: the served page's one way to the network, inlined only by `runsync ui` (serve.py), never into a
 * static report (which makes no request of any kind). report.js calls it for the index, series and media. */
"use strict";
window.runsyncGet = function (url) {
  return fetch(url, { credentials: "same-origin", cache: "no-store" }).then(function (resp) {
    if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
    return resp.json();
  });
};
