"""One evaluation layer: the metric spec, the reference rule and the streaming evaluator behind every number.

``softlabels score``, the validation loop, ``softlabels evaluate`` and the benchmark all evaluate through this
package, so a quantity has one name and one value whichever command produced it (docs/metrics.md).
"""
