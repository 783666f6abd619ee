# Prints the trace of a Jaeger query API answer as a waterfall, the picture Jaeger's UI draws:
# one line per span, in tree order (each span indented under its CHILD_OF parent, siblings by
# start time), with service, operation (cut to op_width characters), start offset from the
# trace's first span, duration (both in milliseconds) and a bar on one time scale for the
# whole trace (bar_width characters).
#
#   jq -r -f waterfall.jq [--argjson op_width 36] [--argjson bar_width 40] answer.json
#
# A span whose parent is not in the answer starts a tree of its own; spans that no tree
# reaches (a reference cycle) follow at the end, so every span is printed exactly once.

include "trace" {search: "./"};

def repeat($s; $n): if $n > 0 then $s * $n else "" end; # jq's "s" * 0 is null
def lpad($n): repeat(" "; $n - length) + .;
# cut to $n characters, the last one `~` when something was cut
def rpad($n): if length > $n then .[:$n - 1] + "~" else . + repeat(" "; $n - length) end;
# whole microseconds (Jaeger's unit) as milliseconds with three decimals
def ms: "\(. / 1000 | floor).\(. % 1000 | tostring | "00" + . | .[-3:])";

($ARGS.named.op_width // 36) as $op_width
| ($ARGS.named.bar_width // 40) as $width
| spans as $spans
| ($spans | length) as $n
| if $n == 0 then error("no span in the answer") else . end
| ($spans | map(.startTime) | min) as $t0
| ([$spans[] | .startTime + .duration] | max - $t0 | if . > 0 then . else 1 end) as $total
| ($spans | map(.spanID)) as $ids
# [span, depth] for the input span and its descendants; the depth bound stops a cycle
| def tree($depth):
    [., $depth],
    (if $depth < $n then
       .spanID as $id | $spans | map(select(parent == $id)) | sort_by(.startTime)[] | tree($depth + 1)
     else empty end);
  ([$spans | map(select(parent as $p | $p == null or ($ids | index($p)) == null))
    | sort_by(.startTime)[] | tree(0)]) as $reached
| ($reached | map(.[0].spanID)) as $seen
| ($reached + [$spans | map(select(.spanID as $id | $seen | index($id) | not)) | sort_by(.startTime)[] | [., 0]])
  as $rows
| ($rows | map(2 * .[1] + (.[0].service | length)) + [7] | max) as $service_width
| def bar:
    (((.startTime - $t0) * $width / $total) | floor) as $from
    | ([((.startTime + .duration - $t0) * $width / $total) | ceil, $from + 1] | max | [., $width] | min) as $to
    | repeat(" "; $from) + repeat("#"; $to - $from) + repeat(" "; $width - $to);
  "trace \($spans[0].traceID): \($n) spans, \($total | ms) ms",
  ("service" | rpad($service_width)) + "  " + ("operation" | rpad($op_width))
    + ("start ms" | lpad(10)) + ("dur ms" | lpad(10))
    + "  |0" + ("\($total | ms) ms" | lpad($width - 1)) + "|",
  ($rows[] | .[0] as $s | .[1] as $depth
   | (repeat("  "; $depth) + $s.service | rpad($service_width)) + "  " + ($s.operationName | rpad($op_width))
     + ($s.startTime - $t0 | ms | lpad(10)) + ($s.duration | ms | lpad(10))
     + "  |" + ($s | bar) + "|")
