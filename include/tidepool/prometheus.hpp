#pragma once
// Pool metrics in the Prometheus text exposition format (version 0.0.4), for a /metrics endpoint.
//
//   std::string body = tidepool::to_prometheus(pool.metrics(), "myserver_pool");
//
// Every metric gets a `# HELP` and a `# TYPE` line. Monotonic counts are counters named
// `<prefix>_<what>_total`; levels (waiting, running, queue segments) are gauges; the latency
// histograms are `<prefix>_queue_wait_seconds` and `<prefix>_run_time_seconds`, with cumulative
// `_bucket{le="..."}` lines (powers of two nanoseconds, then +Inf), `_sum` and `_count`.

#include <string>       // for std::string
#include <string_view>  // for std::string_view

#include "tidepool/metrics.hpp"

namespace tidepool {

// Throws std::invalid_argument if `prefix` is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
[[nodiscard]] std::string to_prometheus(const pool_metrics& metrics, std::string_view prefix);

}  // namespace tidepool
