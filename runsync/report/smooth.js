/* runsync report: the debiased EMA of runsync/reader/smooth.py, ported to JavaScript.
 *
 * Same rules, same operations in the same order, so the curve in the report is the
 * one runsync.smooth() computes in Python (tests/test_report.py compares them):
 *   last = last * w + (1 - w) * v;   out = last / (1 - w ** n)
 * n counts the finite values so far; non-finite values pass through unsmoothed;
 * weight 0 or a constant series returns the values unchanged.
 *
 * The one difference is w ** n: Python calls the C library's pow(), which is
 * correctly rounded in all but rare cases, while Math.pow in browsers is not
 * (it differs from glibc for ~5% of (w, n)). So w ** n is computed here in
 * double-double arithmetic and rounded once, which gives the correctly rounded
 * power; once it is below 2^-60, 1 - w ** n is exactly 1 in both languages.
 */
"use strict";

var runsyncSmooth = (function () {
  var SPLIT = 134217729; // 2^27 + 1, Dekker's splitter
  var TINY = Math.pow(2, -60);

  // a * b = p + e exactly (Dekker); valid for the magnitudes used here (w < 1, no overflow).
  function twoProd(a, b) {
    var p = a * b;
    var t = SPLIT * a;
    var ah = t - (t - a);
    var al = a - ah;
    t = SPLIT * b;
    var bh = t - (t - b);
    var bl = b - bh;
    var e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
    return [p, e];
  }

  function smooth(values, weight) {
    weight = Number(weight);
    if (!(weight >= 0 && weight < 1)) {
      throw new RangeError("smoothing weight must be in [0, 1), got " + weight);
    }
    var n = values.length;
    var vals = new Array(n);
    var first = null;
    var constant = true;
    for (var i = 0; i < n; i++) {
      var v = Number(values[i]);
      vals[i] = v;
      if (isFinite(v)) {
        if (first === null) first = v;
        else if (v !== first) constant = false;
      }
    }
    if (weight === 0 || (first !== null && constant)) return vals;
    var out = new Array(n);
    var last = 0.0;
    var hi = 1.0; // w ** count as the unevaluated sum hi + lo
    var lo = 0.0;
    for (var j = 0; j < n; j++) {
      var x = vals[j];
      if (!isFinite(x)) {
        out[j] = x;
        continue;
      }
      last = last * weight + (1.0 - weight) * x;
      if (hi !== 0) {
        var pe = twoProd(hi, weight);
        var e = pe[1] + lo * weight;
        var s = pe[0] + e;
        lo = e - (s - pe[0]);
        hi = s;
        if (hi < TINY) {
          hi = 0;
          lo = 0;
        }
      }
      out[j] = last / (1.0 - hi);
    }
    return out;
  }

  return smooth;
})();

if (typeof module !== "undefined" && module.exports) {
  module.exports = runsyncSmooth;
}
