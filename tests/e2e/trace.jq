# Definitions shared by check-trace.jq and waterfall.jq over a Jaeger query API answer
# (GET /api/traces/{id} or a /api/traces search: {"data": [{"spans": [...], "processes": {...}}]}).
# Each includes it with `include "trace" {search: "./"};` (found beside the including file).

# Every span of the answer, with its process's service name as .service.
def spans: [.data[]? | .processes as $processes | .spans[] | . + {service: $processes[.processID].serviceName}];
def tag($key): first(.tags[]? | select(.key == $key) | .value) // null;
# The span id of the span's CHILD_OF reference, or null.
def parent: first(.references[]? | select(.refType == "CHILD_OF") | .spanID) // null;
